"""The web app: an exported image classifier behind a page, `POST /predict` and `GET /health`.

    deftly serve bears.pkl --port 8000                      # the command line
    serve("bears.pkl", port=8000)                           # the same from Python
    app = create_app(load_learner(path), ServeSettings())   # the Starlette app, for tests or another server

`deftly.serve.classify` (the ranked-probabilities answer, shared with `deftly predict`),
`deftly.serve.inputs` (what an image request may hold) and `deftly.serve.fetch` (an image URL's
body, within a deadline and off the server's own network) have no web dependencies.
"""
from deftly.serve.app import ServeSettings, create_app, listen, serve
from deftly.serve.classify import image_classes, ranked_prediction
from deftly.serve.fetch import fetch_image_url
from deftly.serve.inputs import IMAGE_FORMATS, RequestError, check_image

__all__ = ["IMAGE_FORMATS", "RequestError", "ServeSettings", "check_image", "create_app", "fetch_image_url",
           "image_classes", "listen", "ranked_prediction", "serve"]
