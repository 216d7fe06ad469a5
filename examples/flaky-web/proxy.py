"""A tiny HTTP reverse proxy for the flaky-web example: GET only."""
import http.server
import sys
import urllib.error
import urllib.request

listen, upstream = sys.argv[1], sys.argv[2].rstrip("/")
host, port = listen.rsplit(":", 1)


class Proxy(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        try:
            with urllib.request.urlopen(upstream + self.path, timeout=2) as r:
                body, status = r.read(), r.status
        except (urllib.error.URLError, OSError) as e:
            body, status = f"upstream failed: {e}\n".encode(), 502
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


http.server.ThreadingHTTPServer((host, int(port)), Proxy).serve_forever()
