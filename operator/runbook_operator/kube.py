"""The only module that talks to the Kubernetes API (checked by import-linter).

A thin, typed funnel over the official client's transport: every call is a plain REST request
with JSON dicts in and out (no generated models: they cost CPU per object and hide fields), and
every failure becomes one of a few exceptions that the rest of the operator can act on without
importing the client. Calls are synchronous; async callers run them on a thread pool.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.config.config_exception import ConfigException

from runbook_operator.apigroup import API_VERSION

USER_AGENT = "runbook-operator/0.1"
CONNECTIONS = 32
JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


@dataclass(frozen=True, slots=True)
class Resource:
    """Where a kind lives in the REST API."""

    group_version: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None = None, name: str | None = None, sub: str = "") -> str:
        base = "/api/v1" if self.group_version == "v1" else f"/apis/{self.group_version}"
        if self.namespaced and namespace is not None:
            base += f"/namespaces/{quote(namespace, safe='')}"
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{quote(name, safe='')}"
        return f"{base}/{sub}" if sub else base


RUNBOOKS = Resource(API_VERSION, "runbooks")
EXECUTIONS = Resource(API_VERSION, "runbookexecutions")
TRIGGERS = Resource(API_VERSION, "runbooktriggers")
APPROVALS = Resource(API_VERSION, "runbookapprovals")
LOCAL_ACCESS_REVIEWS = Resource("authorization.k8s.io/v1", "localsubjectaccessreviews")
JOBS = Resource("batch/v1", "jobs")
PODS = Resource("v1", "pods")
CONFIGMAPS = Resource("v1", "configmaps")
SECRETS = Resource("v1", "secrets")
EVENTS = Resource("v1", "events")
SERVICE_ACCOUNTS = Resource("v1", "serviceaccounts")
NAMESPACES = Resource("v1", "namespaces", namespaced=False)
ROLES = Resource("rbac.authorization.k8s.io/v1", "roles")
ROLE_BINDINGS = Resource("rbac.authorization.k8s.io/v1", "rolebindings")
CRDS = Resource("apiextensions.k8s.io/v1", "customresourcedefinitions", namespaced=False)
LEASES = Resource("coordination.k8s.io/v1", "leases")
"""The operator's leadership Leases (leadership.py decides, election.py writes them)."""


class KubeError(RuntimeError):
    """An API call failed; `status` is the HTTP status (0: no answer)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}" if status else message)
        self.status = status
        self.reason = reason
        self.message = message


class NotFound(KubeError):
    pass


class AlreadyExists(KubeError):
    pass


class Conflict(KubeError):
    """resourceVersion mismatch: someone wrote in between; re-read and retry."""


class Gone(KubeError):
    """410: a watch's resourceVersion is older than the server keeps; list again."""


class Invalid(KubeError):
    """422: the object breaks its schema or a validation rule; the message names the field."""


def _error(status: int, body: bytes) -> KubeError:
    try:
        data = json.loads(body)
        reason, message = str(data.get("reason", "")), str(data.get("message", ""))
    except ValueError:
        reason, message = "", body[:500].decode("utf-8", "replace")
    if status == 404:
        return NotFound(status, reason or "NotFound", message)
    if status == 409:
        kind = AlreadyExists if reason == "AlreadyExists" else Conflict
        return kind(status, reason or "Conflict", message)
    if status == 422:
        return Invalid(status, reason or "Invalid", message)
    return KubeError(status, reason, message)


WATCH_SECONDS = 290
"""A watch is closed by the server after this and continued from its last version."""
WATCH_CHUNK = 64 * 1024
WATCH_LINE_MAX = 4 * 1024 * 1024
"""Longest watch event kept (an object is at most ~1.5 MiB in etcd): a longer one is a fault."""


def _lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Newline-separated records of a chunked stream, each bounded by WATCH_LINE_MAX."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            if line.strip():
                yield line
        if len(pending) > WATCH_LINE_MAX:
            raise ValueError(f"a watch event longer than {WATCH_LINE_MAX} bytes")
    if pending.strip():
        yield pending


class Kube:
    """A connection to one cluster. Thread-safe (urllib3 pool underneath)."""

    def __init__(self, api_client: k8s_client.ApiClient, timeout: float = 30.0) -> None:
        self._client = api_client
        self._client.user_agent = USER_AGENT
        self.timeout = timeout

    @classmethod
    def connect(
        cls,
        kubeconfig: str | None = None,
        context: str | None = None,
        connections: int = CONNECTIONS,
    ) -> Kube:
        """In-cluster credentials when running in a pod, else kubeconfig (and its context).
        `connections`: as many as threads call at once (reconciles plus Job creators); the
        default (5 x cores) drops and reopens TLS connections under load."""
        cfg = k8s_client.Configuration()
        cfg.connection_pool_maxsize = connections
        if kubeconfig is None and context is None:
            try:
                k8s_config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
                return cls(k8s_client.ApiClient(cfg))
            except ConfigException:
                pass
        try:
            k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig, context=context, client_configuration=cfg
            )
            return cls(k8s_client.ApiClient(cfg))
        except (ConfigException, OSError) as exc:
            raise KubeError(0, "NoConfig", f"no usable kubeconfig: {exc}") from None

    # -- transport -----------------------------------------------------------------------------
    def call(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = JSON,
    ) -> dict[str, Any]:
        headers = {"Accept": JSON}
        if body is not None:
            headers["Content-Type"] = content_type
        params = self._client.param_serialize(
            method=method,
            resource_path=path,
            query_params=list(query.items()) if query else None,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            resp = self._client.call_api(*params, _request_timeout=self.timeout)
            data = resp.read()  # type: ignore[no-untyped-call]
        except Exception as exc:  # transport failures (refused, TLS, timeout) in one type
            raise KubeError(0, "Unreachable", f"{method} {path}: {exc}") from None
        if not 200 <= resp.status < 300:
            raise _error(resp.status, data or b"")
        return json.loads(data) if data else {}

    def get_text(self, path: str, query: Mapping[str, str], max_bytes: int) -> str:
        """GET a plain-text endpoint (a pod's log), at most `max_bytes` read."""
        params = self._client.param_serialize(
            method="GET",
            resource_path=path,
            query_params=list(query.items()),
            header_params={"Accept": "*/*"},
            auth_settings=["BearerToken"],
        )
        try:
            resp = self._client.call_api(*params, _request_timeout=self.timeout)
            data = resp.read()  # type: ignore[no-untyped-call]
        except Exception as exc:
            raise KubeError(0, "Unreachable", f"GET {path}: {exc}") from None
        if not 200 <= resp.status < 300:
            raise _error(resp.status, data or b"")
        return bytes(data or b"")[:max_bytes].decode("utf-8", "replace")

    # -- verbs ---------------------------------------------------------------------------------
    def get(self, res: Resource, namespace: str | None, name: str) -> dict[str, Any]:
        return self.call("GET", res.path(namespace, name))

    def list(
        self, res: Resource, namespace: str | None, selector: str | None = None
    ) -> list[dict[str, Any]]:
        query = {"labelSelector": selector} if selector else None
        return list(self.call("GET", res.path(namespace), query=query).get("items", []))

    def list_versioned(
        self, res: Resource, namespace: str | None, selector: str
    ) -> tuple[builtins.list[dict[str, Any]], str]:
        """LIST with a server-side label selector: (items, the list's resourceVersion), the
        version a watch continues from."""
        data = self.call("GET", res.path(namespace), query={"labelSelector": selector})
        version = str((data.get("metadata") or {}).get("resourceVersion") or "")
        return list(data.get("items", [])), version

    def watch(
        self,
        res: Resource,
        namespace: str | None,
        selector: str,
        resource_version: str,
        timeout_seconds: int = WATCH_SECONDS,
    ) -> Iterator[dict[str, Any]]:
        """WATCH from `resource_version` with a server-side label selector: one event dict
        (`type`, `object`) per line, bookmarks included. Ends when the server closes the watch
        (after `timeout_seconds`); raises Gone when the version is too old (list again)."""
        query = {
            "watch": "1",
            "labelSelector": selector,
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        params = self._client.param_serialize(
            method="GET",
            resource_path=res.path(namespace),
            query_params=list(query.items()),
            header_params={"Accept": JSON},
            auth_settings=["BearerToken"],
        )
        try:
            resp = self._client.call_api(
                *params, _request_timeout=(self.timeout, timeout_seconds + 30)
            )
        except Exception as exc:
            raise KubeError(0, "Unreachable", f"WATCH {res.path(namespace)}: {exc}") from None
        if not 200 <= resp.status < 300:
            raise _error(resp.status, resp.read() or b"")  # type: ignore[no-untyped-call]
        stream = resp.response
        try:
            for line in _lines(stream.stream(WATCH_CHUNK, decode_content=True)):
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    if status.get("code") == 410:
                        raise Gone(410, "Expired", str(status.get("message") or "too old"))
                    raise KubeError(int(status.get("code") or 0), "WatchError", str(status))
                yield event
        except (OSError, ValueError) as exc:  # a connection cut mid-stream
            raise KubeError(0, "Unreachable", f"WATCH {res.path(namespace)}: {exc}") from None
        finally:
            stream.release_conn()

    def create(
        self, res: Resource, namespace: str | None, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        return self.call("POST", res.path(namespace), body=dict(body))

    def replace(
        self, res: Resource, namespace: str | None, name: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        """PUT; with metadata.resourceVersion set, a concurrent write raises Conflict."""
        return self.call("PUT", res.path(namespace, name), body=dict(body))

    def patch(
        self,
        res: Resource,
        namespace: str | None,
        name: str,
        body: Any,
        *,
        subresource: str = "",
        content_type: str = MERGE_PATCH,
    ) -> dict[str, Any]:
        """Merge patch by default; put metadata.resourceVersion in `body` to guard it."""
        return self.call(
            "PATCH", res.path(namespace, name, subresource), body=body, content_type=content_type
        )

    def delete(
        self,
        res: Resource,
        namespace: str | None,
        name: str,
        *,
        propagation: str = "Background",
        uid: str | None = None,
    ) -> None:
        """Delete; NotFound is success (idempotent). `uid` makes sure it is the same object."""
        body: dict[str, Any] = {"propagationPolicy": propagation}
        if uid is not None:
            body["preconditions"] = {"uid": uid}
        try:
            self.call("DELETE", res.path(namespace, name), body=body)
        except NotFound:
            return

    def whoami(self) -> dict[str, Any]:
        """The user this connection authenticates as (a SelfSubjectReview: username, uid,
        groups), as the apiserver sees it: what admission will compare a stamp with."""
        review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
        made = self.call("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", body=review)
        return dict((made.get("status") or {}).get("userInfo") or {})

    def allowed(
        self,
        user: str,
        groups: Sequence[str],
        uid: str | None,
        attributes: Mapping[str, str],
    ) -> bool:
        """Does RBAC (the apiserver's authorizers) allow `user` these resourceAttributes (in
        their namespace)? A LocalSubjectAccessReview: the answer is the apiserver's, and a
        Role in a watched namespace may grant asking it."""
        spec: dict[str, Any] = {
            "user": user,
            "groups": list(groups),
            "resourceAttributes": dict(attributes),
        }
        if uid:
            spec["uid"] = uid
        namespace = attributes["namespace"]
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "LocalSubjectAccessReview",
            "metadata": {"namespace": namespace},
            "spec": spec,
        }
        made = self.create(LOCAL_ACCESS_REVIEWS, namespace, review)
        return bool((made.get("status") or {}).get("allowed"))

    def create_or_get(
        self, res: Resource, namespace: str | None, body: Mapping[str, Any]
    ) -> tuple[dict[str, Any], bool]:
        """Create, or return the existing object of that name: (object, created)."""
        try:
            return self.create(res, namespace, body), True
        except AlreadyExists:
            return self.get(res, namespace, str(body["metadata"]["name"])), False


STATUS_RETRIES = 5


def write_status(
    kube: Kube, res: Resource, body: Mapping[str, Any], status: Mapping[str, Any]
) -> dict[str, Any] | None:
    """The one way the operator writes a status: `status`, derived from `body`'s status.

    Nothing is written when it equals what is stored. Guarded by resourceVersion. A conflict
    caused by a change elsewhere in the object (spec, metadata: a `kubectl patch`, kopf's
    annotations) is retried with the fresh resourceVersion, because the caller's other effects
    are already done and the status must follow them; only a status changed by someone else in
    between raises Conflict, so the caller derives it again from a fresh read. An object gone
    meanwhile needs no status. Returns the object as stored after the write (None: nothing
    was written), so the caller can keep it instead of reading it again.
    """
    meta = body["metadata"]
    namespace, name = meta.get("namespace"), str(meta["name"])
    based_on = body.get("status")
    version = meta["resourceVersion"]
    for _ in range(STATUS_RETRIES):
        if status == based_on:
            return None
        patch = {"metadata": {"resourceVersion": version}, "status": dict(status)}
        try:
            return kube.patch(res, namespace, name, patch, subresource="status")
        except NotFound:
            return None
        except Conflict:
            fresh = kube.get(res, namespace, name)
            if fresh.get("status") != based_on:
                raise
            version = fresh["metadata"]["resourceVersion"]
    raise Conflict(409, "Conflict", f"status of {namespace}/{name} kept changing")


def context_namespace(kubeconfig: str | None = None, context: str | None = None) -> str:
    """The namespace a kubeconfig context names (kubectl's default), else `default`."""
    try:
        contexts, active = k8s_config.list_kube_config_contexts(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    except (ConfigException, OSError):
        return "default"
    chosen = next((c for c in contexts if c.get("name") == context), active) if context else active
    return str(((chosen or {}).get("context") or {}).get("namespace") or "default")
