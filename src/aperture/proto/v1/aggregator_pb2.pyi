from aperture.proto.v1 import profile_pb2 as _profile_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PushResponse(_message.Message):
    __slots__ = ("accepted", "duplicate", "retry_after_ms", "message")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    duplicate: bool
    retry_after_ms: int
    message: str
    def __init__(self, accepted: _Optional[bool] = ..., duplicate: _Optional[bool] = ..., retry_after_ms: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class QueryRequest(_message.Message):
    __slots__ = ("agent_id", "limit", "event_type")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    limit: int
    event_type: str
    def __init__(self, agent_id: _Optional[str] = ..., limit: _Optional[int] = ..., event_type: _Optional[str] = ...) -> None: ...

class BatchSummary(_message.Message):
    __slots__ = ("agent_id", "host", "sequence", "window_start_ns", "window_end_ns", "event_types", "cpu_samples", "lock_wait_ns", "syscalls", "stacks", "received_ns", "bytes")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    WINDOW_START_NS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_END_NS_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPES_FIELD_NUMBER: _ClassVar[int]
    CPU_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    LOCK_WAIT_NS_FIELD_NUMBER: _ClassVar[int]
    SYSCALLS_FIELD_NUMBER: _ClassVar[int]
    STACKS_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_NS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    host: str
    sequence: int
    window_start_ns: int
    window_end_ns: int
    event_types: _containers.RepeatedScalarFieldContainer[str]
    cpu_samples: int
    lock_wait_ns: int
    syscalls: int
    stacks: int
    received_ns: int
    bytes: int
    def __init__(self, agent_id: _Optional[str] = ..., host: _Optional[str] = ..., sequence: _Optional[int] = ..., window_start_ns: _Optional[int] = ..., window_end_ns: _Optional[int] = ..., event_types: _Optional[_Iterable[str]] = ..., cpu_samples: _Optional[int] = ..., lock_wait_ns: _Optional[int] = ..., syscalls: _Optional[int] = ..., stacks: _Optional[int] = ..., received_ns: _Optional[int] = ..., bytes: _Optional[int] = ...) -> None: ...

class QueryResponse(_message.Message):
    __slots__ = ("batches",)
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    batches: _containers.RepeatedCompositeFieldContainer[BatchSummary]
    def __init__(self, batches: _Optional[_Iterable[_Union[BatchSummary, _Mapping]]] = ...) -> None: ...

class AggregateRequest(_message.Message):
    __slots__ = ("event_type", "from_ns", "to_ns", "agent_id", "host", "pid", "limit")
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    FROM_NS_FIELD_NUMBER: _ClassVar[int]
    TO_NS_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    event_type: str
    from_ns: int
    to_ns: int
    agent_id: str
    host: str
    pid: int
    limit: int
    def __init__(self, event_type: _Optional[str] = ..., from_ns: _Optional[int] = ..., to_ns: _Optional[int] = ..., agent_id: _Optional[str] = ..., host: _Optional[str] = ..., pid: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class FunctionValue(_message.Message):
    __slots__ = ("name", "module", "self", "total")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODULE_FIELD_NUMBER: _ClassVar[int]
    SELF_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    name: str
    module: str
    self: int
    total: int
    def __init__(self_, name: _Optional[str] = ..., module: _Optional[str] = ..., self: _Optional[int] = ..., total: _Optional[int] = ...) -> None: ...

class FoldedStack(_message.Message):
    __slots__ = ("frames", "value")
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    frames: _containers.RepeatedScalarFieldContainer[str]
    value: int
    def __init__(self, frames: _Optional[_Iterable[str]] = ..., value: _Optional[int] = ...) -> None: ...

class AggregateResponse(_message.Message):
    __slots__ = ("total", "unit", "functions", "stacks", "batches")
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    FUNCTIONS_FIELD_NUMBER: _ClassVar[int]
    STACKS_FIELD_NUMBER: _ClassVar[int]
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    total: int
    unit: str
    functions: _containers.RepeatedCompositeFieldContainer[FunctionValue]
    stacks: _containers.RepeatedCompositeFieldContainer[FoldedStack]
    batches: int
    def __init__(self, total: _Optional[int] = ..., unit: _Optional[str] = ..., functions: _Optional[_Iterable[_Union[FunctionValue, _Mapping]]] = ..., stacks: _Optional[_Iterable[_Union[FoldedStack, _Mapping]]] = ..., batches: _Optional[int] = ...) -> None: ...

class DiffRequest(_message.Message):
    __slots__ = ("baseline", "comparison", "limit")
    BASELINE_FIELD_NUMBER: _ClassVar[int]
    COMPARISON_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    baseline: AggregateRequest
    comparison: AggregateRequest
    limit: int
    def __init__(self, baseline: _Optional[_Union[AggregateRequest, _Mapping]] = ..., comparison: _Optional[_Union[AggregateRequest, _Mapping]] = ..., limit: _Optional[int] = ...) -> None: ...

class DiffEntry(_message.Message):
    __slots__ = ("name", "baseline_self", "comparison_self", "baseline_share", "comparison_share", "delta_share")
    NAME_FIELD_NUMBER: _ClassVar[int]
    BASELINE_SELF_FIELD_NUMBER: _ClassVar[int]
    COMPARISON_SELF_FIELD_NUMBER: _ClassVar[int]
    BASELINE_SHARE_FIELD_NUMBER: _ClassVar[int]
    COMPARISON_SHARE_FIELD_NUMBER: _ClassVar[int]
    DELTA_SHARE_FIELD_NUMBER: _ClassVar[int]
    name: str
    baseline_self: int
    comparison_self: int
    baseline_share: float
    comparison_share: float
    delta_share: float
    def __init__(self, name: _Optional[str] = ..., baseline_self: _Optional[int] = ..., comparison_self: _Optional[int] = ..., baseline_share: _Optional[float] = ..., comparison_share: _Optional[float] = ..., delta_share: _Optional[float] = ...) -> None: ...

class DiffResponse(_message.Message):
    __slots__ = ("baseline_total", "comparison_total", "functions")
    BASELINE_TOTAL_FIELD_NUMBER: _ClassVar[int]
    COMPARISON_TOTAL_FIELD_NUMBER: _ClassVar[int]
    FUNCTIONS_FIELD_NUMBER: _ClassVar[int]
    baseline_total: int
    comparison_total: int
    functions: _containers.RepeatedCompositeFieldContainer[DiffEntry]
    def __init__(self, baseline_total: _Optional[int] = ..., comparison_total: _Optional[int] = ..., functions: _Optional[_Iterable[_Union[DiffEntry, _Mapping]]] = ...) -> None: ...
