"""The sessions' Nexus endpoint, and namespaces for its callers: created through the operator API
(the same as ``temporal operator nexus endpoint create`` and ``temporal operator namespace
create``), idempotently, by ``durable-sessions serve`` and the examples."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from google.protobuf.duration_pb2 import Duration
from temporalio.api.nexus.v1 import EndpointSpec, EndpointTarget
from temporalio.api.operatorservice.v1 import (
    CreateNexusEndpointRequest,
    ListNexusEndpointsRequest,
    UpdateNexusEndpointRequest,
)
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest, RegisterNamespaceRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from contract import DEFAULT_TASK_QUEUE
from contract.naming import NEXUS_ENDPOINT


async def ensure_nexus_endpoint(
    client: Client,
    *,
    name: str = NEXUS_ENDPOINT,
    target_namespace: str | None = None,
    task_queue: str = DEFAULT_TASK_QUEUE,
) -> str:
    """Make the endpoint ``name`` route to ``task_queue`` in ``target_namespace`` (default: the
    client's), creating or retargeting it; answers its id. Endpoints are cluster-wide."""
    target = EndpointTarget(
        worker=EndpointTarget.Worker(
            namespace=target_namespace or client.namespace, task_queue=task_queue
        )
    )
    spec = EndpointSpec(name=name, target=target)
    listed = await client.operator_service.list_nexus_endpoints(
        ListNexusEndpointsRequest(name=name, page_size=1)
    )
    for endpoint in listed.endpoints:
        if endpoint.spec.name != name:
            continue
        if endpoint.spec.target == target:
            return endpoint.id
        await client.operator_service.update_nexus_endpoint(
            UpdateNexusEndpointRequest(id=endpoint.id, version=endpoint.version, spec=spec)
        )
        return endpoint.id
    try:
        created = await client.operator_service.create_nexus_endpoint(
            CreateNexusEndpointRequest(spec=spec)
        )
    except RPCError as exc:
        if exc.status != RPCStatusCode.ALREADY_EXISTS:
            raise
        return await ensure_nexus_endpoint(
            client, name=name, target_namespace=target_namespace, task_queue=task_queue
        )
    return created.endpoint.id


async def ensure_namespace(
    client: Client,
    namespace: str,
    *,
    retention: timedelta = timedelta(days=1),
    timeout: float = 60,
) -> None:
    """Register ``namespace`` unless it exists, and wait until the server serves it (a new
    namespace takes a few seconds to reach every service)."""
    try:
        await client.workflow_service.register_namespace(
            RegisterNamespaceRequest(
                namespace=namespace,
                workflow_execution_retention_period=Duration(
                    seconds=int(retention.total_seconds())
                ),
            )
        )
    except RPCError as exc:
        if exc.status != RPCStatusCode.ALREADY_EXISTS:
            raise
    deadline = time.monotonic() + timeout
    while True:
        try:
            await client.workflow_service.describe_namespace(
                DescribeNamespaceRequest(namespace=namespace)
            )
            # Visibility answers in the new namespace: it is served, not only registered.
            await Client(client.service_client, namespace=namespace).count_workflows()
            return
        except RPCError:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.5)
