"""aipic's Gradio app: ``python app.py [--host 127.0.0.1] [--port 7860] [--models auto|real|tiny]``.

The app itself lives in aipic.web (one builder per tab, the server, its safety checks). This file stays at the
top of the repository because Hugging Face Spaces, Docker and Gradio's reload mode look for it: ``app.demo`` is
the Blocks, built on first access from the environment.
"""

from aipic.web.app import build_app  # noqa: F401 - for callers of app (tests, notebooks)
from aipic.web.server import demo_from_environment, main


def __getattr__(name):
    if name == "demo":
        global demo
        demo = demo_from_environment()
        return demo
    raise AttributeError(name)


if __name__ == "__main__":
    main()
