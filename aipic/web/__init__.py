"""The web app: the Gradio page (app), the HTTP server and its safety checks (server, security), what the page
shows (views), and who is asking (session, ratelimit)."""
