"""A kubernetes_asyncio ApiClient from the service account or the kubeconfig, read at call time."""

from __future__ import annotations

import os
from pathlib import Path

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


async def api_client(context: str | None = None) -> client.ApiClient:
    """In a pod: the service account. Elsewhere: $KUBECONFIG (or ~/.kube/config), read now.

    kubernetes_asyncio reads $KUBECONFIG once at import, so the path is passed explicitly: a
    variable set later (tests, wrappers) must win.
    """
    configuration = client.Configuration()
    if SERVICE_ACCOUNT_TOKEN.exists() and os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=configuration)
    else:
        path = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or os.path.expanduser("~/.kube/config")
        await config.load_kube_config(
            config_file=path, context=context, client_configuration=configuration, persist_config=False
        )
    return client.ApiClient(configuration=configuration)


def is_conflict(exc: ApiException) -> bool:
    """409 from a resourceVersion precondition, 422 from a failed JSON-patch ``test`` op."""
    return exc.status in (409, 422)
