"""The ceiling for scenario 1: the same HTTP client at the same concurrency against the same
simulator, doing nothing else. Run as its own process, like a sweep."""

import concurrent.futures
import sys
import time

import requests
import requests.adapters


def main() -> None:
    url, count, concurrency, trust_env = (
        sys.argv[1],
        int(sys.argv[2]),
        int(sys.argv[3]),
        sys.argv[4],
    )
    session = requests.Session()
    session.trust_env = trust_env == "1"
    pool = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=concurrency)
    session.mount("http://", pool)

    def one(i: int) -> int:
        params = {"kod": "4711", "sifre": "bench", "tahsilat_api_islem_id": f"c{i}"}
        with session.get(url, params=params, timeout=20, stream=True) as response:
            response.raw.read1(16384, decode_content=True)
            return response.status_code

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as executor:
        statuses = list(executor.map(one, range(count)))
    elapsed = time.perf_counter() - started
    assert statuses.count(200) == count
    print(f"{count / elapsed:.1f}")


if __name__ == "__main__":
    main()
