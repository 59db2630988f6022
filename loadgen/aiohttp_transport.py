"""The aiohttp transport: one ClientSession per run, pool sized to the in-flight ceiling.

The fallback for what the fast transport does not speak: TLS (https://) and HTTP proxies.
Outcomes use the same error classes as the fast transport (docs/results-format.md).
"""

from __future__ import annotations

import aiohttp
from aiohttp import http_exceptions

from loadgen.transport import status_class


def _payload_error_class(e: aiohttp.ClientPayloadError) -> str:
    """A body cut short by the peer is `connect` (closed mid-response); a body that
    breaks the framing rules (bad chunk sizes, ...) is `protocol`."""
    return "connect" if isinstance(e.__cause__, http_exceptions.ContentLengthError) else "protocol"


class AiohttpTransport:
    def __init__(self, urls: tuple[str, ...], body: bytes, content_type: str, *,
                 max_in_flight: int, timeout_s: float,
                 proxies: tuple[str | None, ...] | None = None) -> None:
        self.urls = tuple(urls)
        self.proxies = tuple(proxies) if proxies is not None else (None,) * len(self.urls)
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
            async with self.session.post(self.urls[target], data=self.body, headers=self.headers,
                                         proxy=self.proxies[target]) as resp:
                await resp.read()
                return status_class(resp.status)
        except TimeoutError:
            return "timeout"
        except aiohttp.ClientPayloadError as e:
            return _payload_error_class(e)
        except aiohttp.ClientResponseError:
            return "protocol"
        except (aiohttp.ClientConnectionError, OSError):
            return "connect"

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None
