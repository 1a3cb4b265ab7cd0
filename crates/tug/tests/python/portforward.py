"""The official Python client's port-forward (the v4 channel protocol) against a pod's httpd:
prints the response body it reads through the forwarded port."""
import sys

from kubernetes import client, config
from kubernetes.stream import portforward

config.load_kube_config()
api = client.CoreV1Api()
pod, port = sys.argv[1], int(sys.argv[2])
pf = portforward(api.connect_get_namespaced_pod_portforward, pod, "default", ports=str(port))
sock = pf.socket(port)
sock.setblocking(True)
sock.sendall(b"GET / HTTP/1.0\r\nHost: pod\r\n\r\n")
response = b""
while True:
    chunk = sock.recv(4096)
    if not chunk:
        break
    response += chunk
sock.close()
error = pf.error(port)
if error:
    sys.exit(f"port-forward error: {error}")
sys.stdout.write(response.split(b"\r\n\r\n", 1)[1].decode())
