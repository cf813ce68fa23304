"""The app server's own checks, without starting it."""

import socket

from aipic.web.security import without_server_paths
from aipic.web.server import _port_is_free


def test_a_port_whose_old_connections_linger_is_free_to_restart_on():
    """After a crash or a stop with clients connected, the port's old connections stay in TIME_WAIT for a minute;
    uvicorn can bind it (SO_REUSEADDR), so the start-up check must say it is free."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    served, _ = listener.accept()
    served.close()  # the server side closes first: its end of the connection lingers in TIME_WAIT
    client.close()
    listener.close()
    plain = socket.socket()
    try:
        plain.bind(("127.0.0.1", port))
        lingering = False
    except OSError:
        lingering = True
    finally:
        plain.close()
    assert lingering  # without SO_REUSEADDR the port still looks taken…
    assert _port_is_free("127.0.0.1", port) is None  # …but the server can listen there
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert _port_is_free("127.0.0.1", taken.getsockname()[1])  # a port another server listens on is not free


def test_messages_shown_to_clients_carry_no_server_paths():
    assert without_server_paths("Cannot move /root/.aipic/keys/ca-key.pem to the gradio cache dir") == "Cannot move ca-key.pem to the gradio cache dir"
    assert without_server_paths("cannot identify image file '/tmp/gradio/abc/notes.png'") == "cannot identify image file 'notes.png'"
    assert without_server_paths("see https://example.org/a/b") == "see https://example.org/a/b"
