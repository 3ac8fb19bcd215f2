"""Entry task: takes one sensor reading, `{"device": "t-17", "celsius": 21.5}`.

It validates the reading (`validate`, synchronously, Nuclio-style `call_function`), enriches and
stores it (`enrich`, synchronously, through the proxy with `requests`; `enrich` calls `store`),
and hands a copy to `archive` without waiting (`Prefer: respond-async`: the proxy answers
`202 Accepted` at once and runs the call). Answers `{"id": …, "fahrenheit": …}`.
"""

import nuclio_sdk


def _text(body):
    return body.decode(errors="replace") if isinstance(body, bytes) else body


def handler(context, event, requests_session):
    reading = event.body if isinstance(event.body, dict) else {}
    checked = context.platform.call_function(
        "validate", nuclio_sdk.Event(body=reading, method="POST")
    )
    if checked.status_code != 200:
        return checked.status_code, _text(checked.body)

    address = event.headers["Fusionizer-Server-Address"]
    port = event.headers.get("Fusionizer-Server-Port", "8000")
    proxy = f"http://{address}:{port}"
    enriched = requests_session.post(f"{proxy}/enrich", json=checked.body)
    if enriched.status_code != 200:
        return enriched.status_code, f"enrich failed: {enriched.text}"

    # Fire and forget: archiving is slow and nobody waits for it.
    archived = requests_session.post(
        f"{proxy}/archive", json=enriched.json(), headers={"Prefer": "respond-async"}
    )
    if archived.status_code >= 300:
        context.logger.warn_with("archive refused", status=archived.status_code)
    return enriched.json()
