"""What both services share over HTTP: strict JSON bodies and problem+json refusals
(`http`), the access log (`access_log`), listening sockets and the server loop
(`serving`), and the API description with its `/docs` page (`apidocs`).

Only the services import this package (it needs FastAPI and Starlette, from the
`attester` or `verifier` extras); the rest of `bytereplay` stays light.
"""
