"""Real gRPC calls to a test aggregator: Push with raw bytes, and the generated stub."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest

from aggregator_proc import AggregatorProcess
from aperture.proto.v1 import aggregator_pb2 as apb
from aperture.proto.v1 import aggregator_pb2_grpc

RawPush = Callable[..., apb.PushResponse]


def raw_push(channel: grpc.Channel) -> RawPush:
    """Push taking bytes, so garbage and refused batches can be sent as well as real ones."""
    return channel.unary_unary(  # type: ignore[no-any-return]
        "/aperture.v1.Aggregator/Push",
        request_serializer=lambda b: b,
        response_deserializer=apb.PushResponse.FromString,
    )


class AggregatorClient:
    """One channel to ``agg``: raw-bytes Push, the stub, and its token's metadata."""

    def __init__(self, agg: AggregatorProcess) -> None:
        self.channel = grpc.insecure_channel(agg.grpc_target)
        self.push_raw = raw_push(self.channel)
        self.stub = aggregator_pb2_grpc.AggregatorStub(self.channel)  # type: ignore[no-untyped-call]
        self.md = [("authorization", f"Bearer {agg.token}")]

    def push(self, data: bytes, md: list[tuple[str, str]] | None = None) -> apb.PushResponse:
        return self.push_raw(data, metadata=self.md if md is None else md, timeout=10)

    def code(self, data: bytes, md: list[tuple[str, str]] | None = None) -> grpc.StatusCode:
        """The status a push that must fail fails with."""
        with pytest.raises(grpc.RpcError) as err:
            self.push(data, md)
        return err.value.code()

    def refused(self, data: bytes) -> str:
        """The INVALID_ARGUMENT sentence a refused push answers."""
        with pytest.raises(grpc.RpcError) as err:
            self.push(data)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
        return str(err.value.details())
