from ordermon import cli

cli.main()
