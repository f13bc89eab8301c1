"""The collectors' one HTTP client: a GET whose every failure is a :class:`SourceError`.

Collectors take it as their default ``fetch=`` seam (``DcgmCollector``, ``KubernetesCollector``),
so tests pass canned bytes instead.
"""

from __future__ import annotations

import urllib.error
import urllib.request

from collectors.errors import SourceError

HTTP_TIMEOUT_S = 10.0


def http_get(url: str, timeout_s: float = HTTP_TIMEOUT_S) -> bytes:
    """GET ``url``; any failure (refused, timeout, HTTP status >= 400) raises SourceError."""
    request = urllib.request.Request(url, headers={"Accept": "text/plain;version=0.0.4"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.read()
    except urllib.error.HTTPError as exc:
        raise SourceError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise SourceError(f"{url}: cannot connect ({exc.reason})") from exc
    except TimeoutError as exc:
        raise SourceError(f"{url}: no answer within {timeout_s:g} s") from exc
    except (OSError, ValueError) as exc:
        raise SourceError(f"{url}: {type(exc).__name__}: {exc}") from exc
