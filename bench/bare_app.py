"""The baseline of the ingest benchmark: a bare FastAPI endpoint that reads the body and
answers like ingest does, on the same uvicorn settings, with no verification and no broker."""

from __future__ import annotations

import os

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

app = FastAPI()


@app.post("/webhooks/meta")
async def webhook(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse({"status": "ok", "events": 1 if body else 0})


if __name__ == "__main__":
    uvicorn.run(
        app, host="127.0.0.1", port=int(os.environ["PORT"]), log_level="warning", access_log=False, proxy_headers=False
    )
