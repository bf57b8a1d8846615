"""OpenAPI: document the error answers every API operation can give, so clients (and the schema
fuzzer in tests/security/) can rely on the schema for more than the happy path.

drf-spectacular describes only the success responses it can infer. This post-processing hook adds the
errors that come from the shared machinery, not from any one view: validation (400), authentication
(401), ownership and paging (404), body size and type (413, 415), a reused Idempotency-Key (422)
wherever one is taken and an unavailable database or Redis (503, see scheduler_site/api_errors.py).
A view that answers something else (429 from the login throttle, say) declares it with @extend_schema.
"""

from __future__ import annotations

from typing import Any

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "A single error message.",
    "properties": {"detail": {"type": "string"}, "code": {"type": "string"}},
    "required": ["detail"],
}
FIELD_ERRORS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": (
        "Messages per input field (`non_field_errors` for the input as a whole), or `detail` when the "
        "body could not be parsed."
    ),
    "additionalProperties": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
}
DESCRIPTIONS = {
    "400": "Invalid input.",
    "401": "Missing, malformed, expired or revoked access token.",
    "404": "No such object among yours (someone else's is not found either), or a page past the end.",
    "413": "The request body is larger than DATA_UPLOAD_MAX_MEMORY_SIZE.",
    "415": "The request body is not application/json.",
    "422": "The Idempotency-Key already created an order from a different body.",
    "503": (
        "The database or Redis is unavailable. Retry after Retry-After seconds. A write whose connection "
        "dropped while it committed may have taken effect: repeating a PUT, PATCH, DELETE, pause or resume "
        "is harmless; repeat a create, a run-now or a retry with the same Idempotency-Key (it then "
        "answers with what the first attempt did)."
    ),
}
WRITE_METHODS = ("post", "put", "patch")


def _response(code: str) -> dict[str, Any]:
    name = "FieldErrors" if code in ("400", "422") else "Error"
    return {
        "description": DESCRIPTIONS[code],
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}},
    }


def _error_codes(path: str, method: str, operation: dict[str, Any]) -> set[str]:
    codes = {"503"}
    query = {p.get("name") for p in operation.get("parameters", []) if p.get("in") == "query"}
    if method in WRITE_METHODS or query:
        codes.add("400")
    if "requestBody" in operation:
        codes |= {"413", "415"}
    headers = {p.get("name") for p in operation.get("parameters", []) if p.get("in") == "header"}
    if "Idempotency-Key" in headers and "requestBody" in operation:
        # A key is matched with the body it came with (a run-now has none to differ).
        codes.add("422")
    if "{" in path or "page" in query:
        codes.add("404")
    security = operation.get("security")
    # drf-spectacular lists {} among the alternatives when anonymous access is allowed.
    if security and {} not in security:
        codes.add("401")
    return codes


def one_path_per_route(endpoints: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Drop the endpoint of a path without its trailing slash when the path with it is served too."""
    paths = {endpoint[0] for endpoint in endpoints}
    return [e for e in endpoints if e[0].endswith("/") or f"{e[0]}/" not in paths]


def add_error_responses(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault("Error", ERROR_SCHEMA)
    schemas.setdefault("FieldErrors", FIELD_ERRORS_SCHEMA)
    for path, item in result.get("paths", {}).items():
        for method, operation in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            responses = operation.setdefault("responses", {})
            for code in sorted(_error_codes(path, method, operation)):
                responses.setdefault(code, _response(code))
    return result
