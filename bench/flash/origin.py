"""A slow origin for bench/flash-crowd.sh: every GET waits DELAY seconds, then answers with
SIZE bytes, cacheable for a minute. It prints one line per request: the monotonic time the
request arrived and the time its first body byte was sent."""
import socket, sys, threading, time

host, port, size, delay = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
body = b"x" * size
lock = threading.Lock()


def serve(conn):
    with conn:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        arrived = time.monotonic()
        if data.startswith(b"GET /_outpost/health") or data.startswith(b"HEAD"):
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            return
        time.sleep(delay)
        head = (f"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n"
                f"cache-control: max-age=60\r\ncontent-length: {size}\r\nconnection: close\r\n\r\n")
        conn.sendall(head.encode())
        first = time.monotonic()
        conn.sendall(body)
        with lock:
            print(f"request {arrived:.6f} first_byte {first:.6f}", flush=True)


listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind((host, port))
listener.listen(1024)
while True:
    conn, _ = listener.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
