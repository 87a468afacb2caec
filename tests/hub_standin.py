"""A stand-in for the Hugging Face Hub over real HTTP, for `datagen push` (datagen/dataset/hub.py).

`HubStandIn` serves, on 127.0.0.1, the endpoints huggingface_hub 2.4 calls to create a repository and commit to it
(read from its hf_api.py, _commit_api.py and lfs.py), with the answers' shapes the client parses:

    GET  /api/whoami-v2                                   the token's user
    POST /api/repos/create                                {name, organization, visibility | private, type}
    POST /api/validate-yaml                               a README.md's metadata (create_commit sends it first)
    GET  /api/{type}s/{id}[/revision/{rev}]               repo_info: sha, private, siblings
    POST /api/{type}s/{id}/preupload/{rev}                each file's upload mode ("lfs" for parquet and big or
                                                          binary files, else "regular") and the oid the Hub holds
                                                          at that path (sha256 for LFS, the git blob sha1 else)
    POST /{type}s/{id}.git/info/lfs/objects/batch         LFS batch API, basic transfer: an upload action (a
                                                          pre-signed URL) and a verify action per object not yet
                                                          stored, none for an object stored already
    PUT  /lfs-objects/{oid}?signature=...                 the object's bytes (no bearer token, as on S3); the
                                                          sha256 is checked
    POST /{type}s/{id}.git/info/lfs/objects/verify        the object is stored
    POST /api/{type}s/{id}/commit/{rev}                   NDJSON: header, file (base64), lfsFile, deletedFile,
                                                          deletedFolder; a commit refers only to stored objects
    GET  /api/{type}s/{id}/tree/{rev}[/{path}]            the tree (recursive or not)
    POST /api/{type}s/{id}/paths-info/{rev}               form `paths`: those that exist
    GET  /api/{type}s/{id}/commits/{rev}                  the commits, newest first
    GET|HEAD /{type}s/{id}/resolve/{rev}/{path}           a file's content
    *    /api/{type}s/{id}/xet-*-token/{rev}              refused (501): the stand-in speaks LFS only

Every request but the pre-signed PUT must carry `Authorization: Bearer TOKEN`; a wrong or missing one is answered
401 with the Hub's "Invalid credentials in Authorization header". Repositories are kept in memory, each commit a
full tree with a commit id of its own; the blobs (regular and LFS) are written to files under `root`, so that a
test can search what the Hub stored. Every request is recorded (`requests`), and faults are scripted by route
and occurrence (`fail`): a status, or the connection dropped.

huggingface_hub uploads through Xet whenever hf_xet is installed (utils/_runtime.is_xet_available), whatever the
server says: the tests set HF_HUB_DISABLE_XET=1 (constants.HF_HUB_DISABLE_XET in process) so that it uses LFS.
"""

import base64
import hashlib
import json
import re
import secrets
import socket
import struct
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

LFS_THRESHOLD = 10 * 1024 * 1024  # the Hub's: a file this big goes to LFS whatever its name
_REPO = r"(?P<type>dataset|model|space)s/(?P<id>[^/]+/[^/]+?)"


def git_blob_sha1(data: bytes) -> str:
    """A file's git blob id, as the Hub gives a regular file's oid."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Blob:
    size: int
    oid: str  # the git blob id of the file (of the LFS pointer for an LFS file)
    sha256: str | None = None  # an LFS file's


@dataclass
class Commit:
    id: str
    title: str
    message: str
    date: str
    files: dict[str, Blob]


@dataclass
class Repo:
    type: str
    id: str
    private: bool
    commits: list[Commit] = field(default_factory=list)  # oldest first

    @property
    def head(self) -> Commit:
        return self.commits[-1]


@dataclass
class Request:
    method: str
    path: str
    route: str
    status: int = 0


@dataclass
class _Fault:
    route: str
    nth: int  # the route's nth request (1-based) fails ...
    times: int  # ... and so do the next times - 1
    status: int  # 0: the connection is dropped without an answer
    seen: int = 0


class HubStandIn:
    """The Hub's API for commits, on 127.0.0.1 (see the module's docstring).

    Args:
        root: a folder for the stored blobs.
        token: the only token accepted.
        user: the token's user name (the namespace of a bare repository name).
    """

    def __init__(self, root: Path, token: str, user: str = "tester"):
        self.root = Path(root)
        self.token = token
        self.user = user
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[Request] = []
        self.uploads: list[str] = []  # the oid of each LFS object stored, in order
        self._signatures: dict[str, str] = {}  # oid -> the signature of its pre-signed upload URL
        self._faults: list[_Fault] = []
        self._holds: dict[str, threading.Event] = {}  # route -> released when set
        self.held = threading.Event()  # set once a request waits at a hold
        self._lock = threading.RLock()
        (self.root / "lfs").mkdir(parents=True, exist_ok=True)
        (self.root / "blobs").mkdir(parents=True, exist_ok=True)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> "HubStandIn":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- what tests look at and script -------------------------------------------------------------------------

    def fail(self, route: str, nth: int = 1, *, status: int = 0, times: int = 1) -> None:
        """Fail the `nth` request to `route` (and the `times - 1` after it) with `status`, or with the connection
        dropped when `status` is 0. Routes: whoami, create, validate-yaml, repo-info, preupload, lfs-batch,
        lfs-upload, lfs-verify, commit, tree, paths-info, commits, resolve."""
        with self._lock:
            self._faults.append(_Fault(route, nth, times, status))

    def hold(self, route: str) -> threading.Event:
        """Keep every request to `route` waiting (at most 60 s) until the returned event is set: a push caught in
        the middle, for a Ctrl-C. `held` is set once one waits."""
        with self._lock:
            self._holds[route] = threading.Event()
            return self._holds[route]

    def count(self, route: str, status: int | None = 200) -> int:
        """How many requests to `route` were answered `status` (None: however answered)."""
        return sum(r.route == route and (status is None or r.status == status) for r in self.requests)

    def repo(self, repo_id: str, repo_type: str = "dataset") -> Repo:
        return self.repos[(repo_type, repo_id)]

    def read(self, repo_id: str, path: str, repo_type: str = "dataset") -> bytes:
        """A file of the repository's head, as stored."""
        blob = self.repo(repo_id, repo_type).head.files[path]
        return self._content(blob)

    # --- storage -------------------------------------------------------------------------------------------------

    def _content(self, blob: Blob) -> bytes:
        if blob.sha256 is not None:
            return (self.root / "lfs" / blob.sha256).read_bytes()
        return (self.root / "blobs" / blob.oid).read_bytes()

    def _store_regular(self, data: bytes) -> Blob:
        oid = git_blob_sha1(data)
        (self.root / "blobs" / oid).write_bytes(data)
        return Blob(len(data), oid)

    def _lfs_blob(self, sha256: str) -> Blob:
        size = (self.root / "lfs" / sha256).stat().st_size
        pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
        return Blob(size, git_blob_sha1(pointer), sha256)

    def _has_object(self, oid: str) -> bool:
        return bool(re.fullmatch(r"[0-9a-f]{64}", oid)) and (self.root / "lfs" / oid).is_file()

    def _new_commit(self, repo: Repo, title: str, message: str, files: dict[str, Blob]) -> Commit:
        parent = repo.commits[-1].id if repo.commits else ""
        commit_id = hashlib.sha1(f"{parent}\0{title}\0{sorted((p, b.oid) for p, b in files.items())}\0"
                                 f"{len(repo.commits)}".encode()).hexdigest()
        commit = Commit(commit_id, title, message, datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z", files)
        repo.commits.append(commit)
        return commit

    # --- the HTTP side -------------------------------------------------------------------------------------------

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                self._serve()

            def do_HEAD(self):
                self._serve()

            def do_POST(self):
                self._serve()

            def do_PUT(self):
                self._serve()

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return data
                        data += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _serve(self):
                url = urlsplit(self.path)
                body = self._body()
                route, handler, match = hub._route(self.command, url.path)
                record = Request(self.command, url.path, route)
                with hub._lock:
                    hub.requests.append(record)
                    fault = hub._fault(route)
                    hold = hub._holds.get(route)
                if hold is not None:
                    hub.held.set()
                    hold.wait(60)
                if fault is not None:
                    if fault.status == 0:  # drop the connection: a reset, no answer
                        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        self.close_connection = True
                        record.status = -1
                        return
                    return self._send(record, fault.status, {"error": f"stand-in fault on {route}"})
                if route != "lfs-upload" and self.headers.get("Authorization") != f"Bearer {hub.token}":
                    return self._send(record, 401, {"error": "Invalid credentials in Authorization header"},
                                      {"X-Error-Message": "Invalid credentials in Authorization header"})
                if handler is None:
                    return self._send(record, 404, {"error": f"stand-in: no route for {self.command} {url.path}"})
                status, payload, headers = handler(match, parse_qs(url.query), body, self.headers)
                self._send(record, status, payload, headers)

            def _send(self, record: Request, status: int, payload, headers: dict | None = None):
                record.status = status
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream" if isinstance(payload, bytes)
                                 else "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

        return Handler

    def _fault(self, route: str) -> _Fault | None:
        for fault in self._faults:
            if fault.route == route:
                fault.seen += 1
                if fault.nth <= fault.seen < fault.nth + fault.times:
                    return fault
        return None

    def _route(self, method: str, path: str):
        """(route name, handler, match) for a request; (name, None, None) when nothing answers it."""
        routes = [
            ("GET", r"/api/whoami-v2", "whoami", self._whoami),
            ("POST", r"/api/repos/create", "create", self._create),
            ("POST", r"/api/validate-yaml", "validate-yaml", self._validate_yaml),
            ("GET", rf"/api/{_REPO}/xet-(?:read|write)-token/.*", "xet", self._xet),
            ("GET", rf"/api/{_REPO}(?:/revision/(?P<rev>[^/]+))?", "repo-info", self._repo_info),
            ("POST", rf"/api/{_REPO}/preupload/(?P<rev>[^/]+)", "preupload", self._preupload),
            ("POST", rf"/api/{_REPO}/commit/(?P<rev>[^/]+)", "commit", self._commit),
            ("GET", rf"/api/{_REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?", "tree", self._tree),
            ("POST", rf"/api/{_REPO}/paths-info/(?P<rev>[^/]+)", "paths-info", self._paths_info),
            ("GET", rf"/api/{_REPO}/commits/(?P<rev>[^/]+)", "commits", self._commits),
            ("POST", rf"/{_REPO}\.git/info/lfs/objects/batch", "lfs-batch", self._lfs_batch),
            ("POST", rf"/{_REPO}\.git/info/lfs/objects/verify", "lfs-verify", self._lfs_verify),
            ("PUT", r"/lfs-objects/(?P<oid>[0-9a-f]{64})", "lfs-upload", self._lfs_upload),
            ("GET|HEAD", rf"/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "resolve", self._resolve),
        ]
        for methods, pattern, name, handler in routes:
            match = re.fullmatch(pattern, path)
            if match and method in methods.split("|"):
                return name, handler, match
        return "unknown", None, None

    def _repo_of(self, match) -> Repo | None:
        return self.repos.get((match["type"], unquote(match["id"])))

    @staticmethod
    def _not_found(what: str = "Repository not found", code: str = "RepoNotFound"):
        return 404, {"error": what}, {"X-Error-Code": code, "X-Error-Message": what}

    def _revision(self, match):
        """(repo, its head) for a request naming a revision (main, or a commit id), or an error answer."""
        repo = self._repo_of(match)
        if repo is None:
            return None, self._not_found()
        rev = unquote(match.groupdict().get("rev") or "main")
        if rev == "main":
            return repo, repo.head
        commit = next((c for c in repo.commits if c.id == rev), None)
        if commit is None:
            return None, self._not_found(f"Invalid rev id: {rev}", "RevisionNotFound")
        return repo, commit

    # --- the endpoints -------------------------------------------------------------------------------------------

    def _whoami(self, match, query, body, headers):
        return 200, {"type": "user", "name": self.user, "fullname": self.user, "orgs": [],
                     "auth": {"type": "access_token", "accessToken": {"displayName": "stand-in", "role": "write"}}}, {}

    def _create(self, match, query, body, headers):
        request = json.loads(body)
        namespace = request.get("organization") or self.user
        repo_type = request.get("type") or "model"
        repo_id = f"{namespace}/{request['name']}"
        url = f"{self.url}/{repo_type}s/{repo_id}" if repo_type != "model" else f"{self.url}/{repo_id}"
        with self._lock:
            if (repo_type, repo_id) in self.repos:
                return 409, {"error": "You already created this repo", "url": url}, {}
            if namespace != self.user:
                return 403, {"error": f"You don't have the rights to create a repo under {namespace}"}, {}
            private = request.get("visibility", "private" if request.get("private") else "public") == "private"
            repo = self.repos[(repo_type, repo_id)] = Repo(repo_type, repo_id, private)
            self._new_commit(repo, "initial commit", "", {".gitattributes": self._store_regular(
                b"*.parquet filter=lfs diff=lfs merge=lfs -text\n")})
        return 200, {"url": url, "name": repo_id}, {}

    def _validate_yaml(self, match, query, body, headers):
        import yaml

        content = json.loads(body)["content"]
        found = re.match(r"---\n(.*?)\n---\n", content, re.S)
        try:
            metadata = yaml.safe_load(found.group(1)) if found else {}
        except yaml.YAMLError as exc:
            return 400, {"errors": [{"message": f"invalid YAML: {exc}"}], "warnings": []}, {}
        if not isinstance(metadata, dict):
            return 400, {"errors": [{"message": "the metadata is not a mapping"}], "warnings": []}, {}
        return 200, {"errors": [], "warnings": []}, {}

    def _xet(self, match, query, body, headers):
        return 501, {"error": "the Hub stand-in speaks LFS only: set HF_HUB_DISABLE_XET=1"}, {}

    def _repo_info(self, match, query, body, headers):
        repo, head = self._revision(match)
        if repo is None:
            return head
        return 200, {"id": repo.id, "author": repo.id.split("/")[0], "sha": head.id, "private": repo.private,
                     "disabled": False, "gated": False, "lastModified": head.date,
                     "siblings": [{"rfilename": path} for path in sorted(head.files)]}, {}

    def _preupload(self, match, query, body, headers):
        repo, head = self._revision(match)
        if repo is None:
            return head
        files = []
        for item in json.loads(body)["files"]:
            sample = base64.b64decode(item["sample"])
            binary = b"\0" in sample
            lfs = item["path"].endswith(".parquet") or item["size"] >= LFS_THRESHOLD or binary
            entry = {"path": item["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False}
            if (blob := head.files.get(item["path"])) is not None:
                entry["oid"] = blob.sha256 if blob.sha256 is not None else blob.oid
            files.append(entry)
        return 200, {"files": files, "commitOid": head.id}, {}

    def _lfs_batch(self, match, query, body, headers):
        if self._repo_of(match) is None:
            return self._not_found()
        request = json.loads(body)
        objects = []
        for item in request["objects"]:
            oid, size = item["oid"], item["size"]
            if self._has_object(oid):
                objects.append({"oid": oid, "size": size})  # stored already: no action, nothing to send
                continue
            with self._lock:
                signature = self._signatures.setdefault(oid, secrets.token_hex(8))
            objects.append({"oid": oid, "size": size, "authenticated": True, "actions": {
                "upload": {"href": f"{self.url}/lfs-objects/{oid}?signature={signature}", "expires_in": 3600},
                "verify": {"href": f"{self.url}/{match['type']}s/{match['id']}.git/info/lfs/objects/verify",
                           "header": {}}}})
        return 200, {"transfer": "basic", "objects": objects, "hash_algo": "sha256"}, {}

    def _lfs_upload(self, match, query, body, headers):
        oid = match["oid"]
        if query.get("signature", [None])[0] != self._signatures.get(oid):
            return 403, {"error": "bad or expired signature"}, {}
        if hashlib.sha256(body).hexdigest() != oid:
            return 400, {"error": "the content does not hash to the oid"}, {}
        with self._lock:
            (self.root / "lfs" / oid).write_bytes(body)
            self.uploads.append(oid)
        return 200, b"", {}

    def _lfs_verify(self, match, query, body, headers):
        request = json.loads(body)
        if not self._has_object(request["oid"]):
            return 404, {"error": "object not found"}, {}
        return 200, {"success": True}, {}

    def _commit(self, match, query, body, headers):
        repo, head = self._revision(match)
        if repo is None:
            return head
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        header = next((line["value"] for line in lines if line["key"] == "header"), None)
        if header is None or not header.get("summary"):
            return 400, {"error": "a commit needs a header with a summary"}, {}
        with self._lock:
            if repo.head.id != head.id or header.get("parentCommit", head.id) != head.id:
                return 412, {"error": "the parent commit is not the head"}, {}
            files = dict(head.files)
            for line in lines:
                value = line["value"]
                if line["key"] == "file":
                    files[value["path"]] = self._store_regular(base64.b64decode(value["content"]))
                elif line["key"] == "lfsFile":
                    if not self._has_object(value["oid"]):
                        return 422, {"error": f"{value['path']}: LFS object {value['oid']} was never uploaded"}, {}
                    files[value["path"]] = self._lfs_blob(value["oid"])
                elif line["key"] == "deletedFile":
                    if files.pop(value["path"], None) is None:
                        return 404, {"error": "A file with this name doesn't exist"}, {"X-Error-Code": "EntryNotFound"}
                elif line["key"] == "deletedFolder":
                    prefix = value["path"].rstrip("/") + "/"
                    files = {path: blob for path, blob in files.items() if not path.startswith(prefix)}
            commit = self._new_commit(repo, header["summary"], header.get("description", ""), files)
        prefix = f"{self.url}/{repo.type}s" if repo.type != "model" else self.url
        return 200, {"success": True, "commitOid": commit.id, "commitUrl": f"{prefix}/{repo.id}/commit/{commit.id}",
                     "pullRequestUrl": None}, {}

    def _entries(self, files: dict[str, Blob], paths: list[str] | None, prefix: str, recursive: bool) -> list:
        """Tree entries: the files (and folders) under `prefix`, or those at `paths`."""
        folders = {"/".join(path.split("/")[:i]) for path in files for i in range(1, path.count("/") + 1)}
        entries = []
        for path in sorted(files) + sorted(folders):
            if paths is not None:
                if path not in paths:
                    continue
            else:
                rest = path[len(prefix):] if path.startswith(prefix) else None
                if rest is None or not rest or (not recursive and "/" in rest):
                    continue
            if path in files:
                blob = files[path]
                entry = {"type": "file", "oid": blob.oid, "size": blob.size, "path": path}
                if blob.sha256 is not None:
                    entry["lfs"] = {"oid": blob.sha256, "size": blob.size, "pointerSize": 134}
            else:
                entry = {"type": "directory", "oid": hashlib.sha1(path.encode()).hexdigest(), "size": 0, "path": path}
            entries.append(entry)
        return entries

    def _tree(self, match, query, body, headers):
        repo, head = self._revision(match)
        if repo is None:
            return head
        folder = unquote(match["path"] or "").strip("/")
        recursive = query.get("recursive", ["false"])[0].lower() == "true"
        return 200, self._entries(head.files, None, f"{folder}/" if folder else "", recursive), {}

    def _paths_info(self, match, query, body, headers):
        repo, head = self._revision(match)
        if repo is None:
            return head
        paths = parse_qs(body.decode()).get("paths", [])
        return 200, self._entries(head.files, paths, "", True), {}

    def _commits(self, match, query, body, headers):
        repo, head = self._revision(match)
        if repo is None:
            return head
        upto = repo.commits[:repo.commits.index(head) + 1]
        return 200, [{"id": c.id, "title": c.title, "message": c.message, "date": c.date,
                      "authors": [{"user": self.user}]} for c in reversed(upto)], {}

    def _resolve(self, match, query, body, headers):
        repo, head = self._revision(match)
        if repo is None:
            return head
        blob = head.files.get(unquote(match["path"]))
        if blob is None:
            return self._not_found("Entry not found", "EntryNotFound")
        return 200, self._content(blob), {"X-Repo-Commit": head.id, "ETag": f'"{blob.sha256 or blob.oid}"'}
