"""The sweep: enrol, claim, ask the providers, record the answers. `sweep.run` is one sweep;
`outcome` is the one module that touches money; `schedule` is pure arithmetic."""
