"""docs/WEBHOOKS.md's receiver, run as written, verifies a real delivery and drops a repeat."""

from __future__ import annotations

import re
import threading
from http.server import HTTPServer
from pathlib import Path
from typing import Any

from webhooks.delivery import Delivery, Outcome, send_webhook
from webhooks.messages import EXECUTION_EVENT
from webhooks.secrets import new_signing_secret

DOC = Path(__file__).resolve().parents[2] / "docs" / "WEBHOOKS.md"


def _receiver_code() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    [code] = [b for b in blocks if "class Receiver" in b]
    return code


def test_the_documented_receiver_verifies_a_delivery_and_acknowledges_a_repeat(capsys: Any) -> None:
    code = _receiver_code()
    serve_line = 'HTTPServer(("0.0.0.0", 8080), Receiver).serve_forever()'
    assert serve_line in code
    secret = new_signing_secret()
    namespace: dict[str, Any] = {"__name__": "receiver_from_docs"}
    exec(code.replace(serve_line, "").replace('"whsec_..."', repr(secret)), namespace)
    server = HTTPServer(("127.0.0.1", 0), namespace["Receiver"])
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        message = Delivery(
            url=url,
            msg_id="order-1-occurrence-1",
            event_type=EXECUTION_EVENT,
            data={"order_name": "Weekly restock", "payload": {"sku": "A-100"}},
            secrets=(secret,),
        )
        assert send_webhook(message).status_code == 204
        assert send_webhook(message).status_code == 204  # the repeat: acknowledged, not processed
        forged = Delivery(**{**message.__dict__, "secrets": (new_signing_secret(),)})
        result = send_webhook(forged)
        assert (result.status_code, result.outcome) == (401, Outcome.FAILED)
    finally:
        server.shutdown()
    assert namespace["done"] == {"order-1-occurrence-1"}
    assert capsys.readouterr().out.count("placing Weekly restock {'sku': 'A-100'}") == 1
