"""The aiohttp transport: one ClientSession per run, pool sized to the in-flight ceiling."""

from __future__ import annotations

import aiohttp

from loadgen.transport import status_class


class AiohttpTransport:
    def __init__(self, urls: tuple[str, ...], body: bytes, content_type: str, *,
                 max_in_flight: int, timeout_s: float) -> None:
        self.urls = tuple(urls)
        self.body = body
        self.headers = {"Content-Type": content_type}
        self.max_in_flight = max_in_flight
        self.timeout_s = timeout_s
        self.session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        connector = aiohttp.TCPConnector(limit=self.max_in_flight, limit_per_host=0,
                                         ttl_dns_cache=None, enable_cleanup_closed=False)
        # total covers waiting for a pooled connection too: that wait is latency
        self.session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            auto_decompress=False, raise_for_status=False)

    async def send(self, target: int) -> str | None:
        try:
            async with self.session.post(self.urls[target], data=self.body,
                                         headers=self.headers) as resp:
                await resp.read()
                return status_class(resp.status)
        except TimeoutError:
            return "timeout"
        except (aiohttp.ClientPayloadError, aiohttp.ClientResponseError):
            return "protocol"
        except (aiohttp.ClientConnectionError, OSError):
            return "connect"

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None
