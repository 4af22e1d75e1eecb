"""Composition root: read the config, build the services, serve the API and the UI on one app.

    python app.py [--host HOST] [--port PORT] [--config PATH]

`build_app()` is the one place where services are created and wired into
routes; tests and benchmarks call it with their own config and context.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from api import audio as audio_api
from api import install_api, install_fallback
from api import metrics as metrics_api
from api.auth import ApiKeys
from api.services import ApiServices
from backends.errors import ParleyError
from backends.pipeline import build_router
from backends.registry import BackendContext
from config import CONFIG_ENV, AppConfig, load_config, resolve_config_path
from multimodal.image_service import ImageService
from multimodal.transcribe import Transcriber
from ui.login import UILogin, warn_if_ui_open
from ui.root import mount_ui
from ui.services import UIServices
from workbench.batch import JobManager
from workbench.presets import PresetStore

logger = logging.getLogger("parley.app")


def build_app(
    config: AppConfig, *, context: BackendContext | None = None, ui: bool = True, preload_models: bool = True
) -> FastAPI:
    """Build the ASGI app: backends, router, API routes and UI; the lifespan closes them.

    Without `context`, backends read secrets from the process environment.
    A `context` without an executor gets the app's bounded thread pool.
    `ui=False` leaves the Gradio UI out, and `preload_models=False` loads
    Whisper on its first use instead of at start-up, for API tests and benchmarks.
    """
    # Presets first: an invalid presets file stops start-up before anything needs closing.
    presets = PresetStore.from_settings(config.presets)

    # Services: one bounded pool for CPU-bound work, one router for every caller.
    executor = ThreadPoolExecutor(max_workers=config.server.worker_threads or os.cpu_count() or 1, thread_name_prefix="parley-worker")
    if context is None:
        context = BackendContext(executor=executor, env=dict(os.environ))
    elif context.executor is None:
        context = dataclasses.replace(context, executor=executor)
    try:
        # Secrets first: a variable set without a value stops start-up before any backend opens.
        api_keys = ApiKeys.from_env(context.env, config.server.api_keys_env)
        login = UILogin.from_env(context.env, config.server)
        router = build_router(config, context)
    except BaseException:
        executor.shutdown(wait=False)
        raise
    if api_keys.enabled:
        logger.info("API keys are required: %d %s from %s", api_keys.count, "key" if api_keys.count == 1 else "keys", api_keys.env_name)
    else:
        logger.info("API keys are not required: %s is not set, so the API is open", api_keys.env_name)
    # Batch jobs belong to this service, not to a browser session, so they outlive a closed tab.
    jobs = JobManager(router, config.batch)
    # Images get their own small pool: each decode may take a few hundred MB.
    images = ImageService.from_config(config, router)
    # Speech-to-text has its own pool, sized for Whisper; its model loads after start-up.
    transcriber = Transcriber(config.audio)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if preload_models:
            transcriber.start()
        try:
            yield
        finally:
            await jobs.aclose()
            # Waits for a Whisper load still in progress: exiting inside it aborts the process.
            await transcriber.aclose()
            images.close()
            await router.aclose()
            executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="Parley", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    # API routes first: the UI is mounted at "/" and would shadow later routes.
    install_api(app, ApiServices(router=router, server=config.server, api_keys=api_keys, images=images))
    app.include_router(metrics_api.router)
    app.state.parley_transcriber = transcriber
    app.include_router(audio_api.router)
    # Add new API routers above this line: the fallback handles every other /v1 path.
    install_fallback(app)

    # Added after install_api, so CORS wraps its error middleware and a 500 carries CORS headers too.
    if config.server.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=config.server.cors_origins,
            allow_methods=["GET", "POST"],
            # Any request header: SDKs send their own (the openai JS SDK sends x-stainless-*),
            # and the bearer key, not a header list, protects the API.
            allow_headers=["*"],
            # Readable from browser code: the SDKs' retry wait, and who served the reply.
            expose_headers=["Retry-After", "X-Parley-Served-By"],
        )

    # UI: mount the Gradio Blocks at "/" here, after the API routes.
    if not ui:
        return app
    mount_ui(
        app,
        UIServices(
            router=router,
            settings=config.ui,
            config=config,
            max_prompt_chars=config.server.max_prompt_chars,
            presets=presets,
            jobs=jobs,
            transcriber=transcriber,
            image_pipeline=images,
        ),
        login=login,
    )
    return app


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="parley", description="Serve the Parley chat workbench and its API.")
    parser.add_argument("--host", help="Interface to listen on (default: server.host in the config, 127.0.0.1).")
    parser.add_argument("--port", type=int, help="TCP port to listen on (default: server.port in the config, 7860).")
    parser.add_argument("--config", help=f"TOML config file (default: ${CONFIG_ENV}, else built-in defaults).")
    return parser.parse_args(argv)


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the process exit status."""
    args = parse_args(argv)
    setup_logging()

    try:
        config = load_config(resolve_config_path(args.config, os.environ))
        app = build_app(config)
    except ParleyError as exc:
        # Config, presets and model files are checked here, before the port is bound.
        print(f"parley: {exc}", file=sys.stderr)
        return 2

    host = args.host or config.server.host
    port = args.port or config.server.port
    logger.info(
        "Parley serving on http://%s:%d with models %s (config: %s)",
        host,
        port,
        ", ".join(config.model_names()),
        config.source,
    )
    warn_if_ui_open(host, port, config.server, os.environ)
    # The WebSocket frame limit matches the body limit, since images travel inline in both.
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False, ws_max_size=config.server.max_body_bytes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
