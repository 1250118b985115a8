from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SchemaVersion(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SCHEMA_VERSION_UNSPECIFIED: _ClassVar[SchemaVersion]
    SCHEMA_VERSION_1: _ClassVar[SchemaVersion]

class FrameKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FRAME_KIND_UNSPECIFIED: _ClassVar[FrameKind]
    FRAME_KIND_USER: _ClassVar[FrameKind]
    FRAME_KIND_KERNEL: _ClassVar[FrameKind]
    FRAME_KIND_JIT: _ClassVar[FrameKind]
    FRAME_KIND_UNKNOWN: _ClassVar[FrameKind]
    FRAME_KIND_PYTHON: _ClassVar[FrameKind]

class LockRole(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LOCK_ROLE_WAIT: _ClassVar[LockRole]
    LOCK_ROLE_HOLD: _ClassVar[LockRole]
    LOCK_ROLE_WAKE: _ClassVar[LockRole]
SCHEMA_VERSION_UNSPECIFIED: SchemaVersion
SCHEMA_VERSION_1: SchemaVersion
FRAME_KIND_UNSPECIFIED: FrameKind
FRAME_KIND_USER: FrameKind
FRAME_KIND_KERNEL: FrameKind
FRAME_KIND_JIT: FrameKind
FRAME_KIND_UNKNOWN: FrameKind
FRAME_KIND_PYTHON: FrameKind
LOCK_ROLE_WAIT: LockRole
LOCK_ROLE_HOLD: LockRole
LOCK_ROLE_WAKE: LockRole

class AgentIdentity(_message.Message):
    __slots__ = ("agent_id", "host", "labels", "version")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    host: str
    labels: _containers.ScalarMap[str, str]
    version: str
    def __init__(self, agent_id: _Optional[str] = ..., host: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., version: _Optional[str] = ...) -> None: ...

class Frames(_message.Message):
    __slots__ = ("name", "module", "kind", "offset", "line")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODULE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LINE_FIELD_NUMBER: _ClassVar[int]
    name: _containers.RepeatedScalarFieldContainer[int]
    module: _containers.RepeatedScalarFieldContainer[int]
    kind: _containers.RepeatedScalarFieldContainer[FrameKind]
    offset: _containers.RepeatedScalarFieldContainer[int]
    line: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, name: _Optional[_Iterable[int]] = ..., module: _Optional[_Iterable[int]] = ..., kind: _Optional[_Iterable[_Union[FrameKind, str]]] = ..., offset: _Optional[_Iterable[int]] = ..., line: _Optional[_Iterable[int]] = ...) -> None: ...

class Stacks(_message.Message):
    __slots__ = ("frames", "lengths")
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    LENGTHS_FIELD_NUMBER: _ClassVar[int]
    frames: _containers.RepeatedScalarFieldContainer[int]
    lengths: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, frames: _Optional[_Iterable[int]] = ..., lengths: _Optional[_Iterable[int]] = ...) -> None: ...

class CpuSamples(_message.Message):
    __slots__ = ("frequency_hz", "stack", "count", "pid", "tid", "comm", "thread")
    FREQUENCY_HZ_FIELD_NUMBER: _ClassVar[int]
    STACK_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    TID_FIELD_NUMBER: _ClassVar[int]
    COMM_FIELD_NUMBER: _ClassVar[int]
    THREAD_FIELD_NUMBER: _ClassVar[int]
    frequency_hz: int
    stack: _containers.RepeatedScalarFieldContainer[int]
    count: _containers.RepeatedScalarFieldContainer[int]
    pid: _containers.RepeatedScalarFieldContainer[int]
    tid: _containers.RepeatedScalarFieldContainer[int]
    comm: _containers.RepeatedScalarFieldContainer[int]
    thread: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, frequency_hz: _Optional[int] = ..., stack: _Optional[_Iterable[int]] = ..., count: _Optional[_Iterable[int]] = ..., pid: _Optional[_Iterable[int]] = ..., tid: _Optional[_Iterable[int]] = ..., comm: _Optional[_Iterable[int]] = ..., thread: _Optional[_Iterable[int]] = ...) -> None: ...

class LockSample(_message.Message):
    __slots__ = ("stack", "pid", "comm", "address", "contentions", "wait_ns", "max_ns", "eagain", "timeouts", "timeout_ns", "interrupted", "hist", "kind", "role", "releases")
    STACK_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    COMM_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CONTENTIONS_FIELD_NUMBER: _ClassVar[int]
    WAIT_NS_FIELD_NUMBER: _ClassVar[int]
    MAX_NS_FIELD_NUMBER: _ClassVar[int]
    EAGAIN_FIELD_NUMBER: _ClassVar[int]
    TIMEOUTS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_NS_FIELD_NUMBER: _ClassVar[int]
    INTERRUPTED_FIELD_NUMBER: _ClassVar[int]
    HIST_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    RELEASES_FIELD_NUMBER: _ClassVar[int]
    stack: int
    pid: int
    comm: int
    address: int
    contentions: int
    wait_ns: int
    max_ns: int
    eagain: int
    timeouts: int
    timeout_ns: int
    interrupted: int
    hist: _containers.RepeatedScalarFieldContainer[int]
    kind: int
    role: LockRole
    releases: int
    def __init__(self, stack: _Optional[int] = ..., pid: _Optional[int] = ..., comm: _Optional[int] = ..., address: _Optional[int] = ..., contentions: _Optional[int] = ..., wait_ns: _Optional[int] = ..., max_ns: _Optional[int] = ..., eagain: _Optional[int] = ..., timeouts: _Optional[int] = ..., timeout_ns: _Optional[int] = ..., interrupted: _Optional[int] = ..., hist: _Optional[_Iterable[int]] = ..., kind: _Optional[int] = ..., role: _Optional[_Union[LockRole, str]] = ..., releases: _Optional[int] = ...) -> None: ...

class LockSamples(_message.Message):
    __slots__ = ("locks",)
    LOCKS_FIELD_NUMBER: _ClassVar[int]
    locks: _containers.RepeatedCompositeFieldContainer[LockSample]
    def __init__(self, locks: _Optional[_Iterable[_Union[LockSample, _Mapping]]] = ...) -> None: ...

class SyscallSample(_message.Message):
    __slots__ = ("pid", "comm", "nr", "name", "count", "errors", "total_ns", "min_ns", "max_ns", "hist", "errnos")
    class ErrnosEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: int
        def __init__(self, key: _Optional[int] = ..., value: _Optional[int] = ...) -> None: ...
    PID_FIELD_NUMBER: _ClassVar[int]
    COMM_FIELD_NUMBER: _ClassVar[int]
    NR_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_NS_FIELD_NUMBER: _ClassVar[int]
    MIN_NS_FIELD_NUMBER: _ClassVar[int]
    MAX_NS_FIELD_NUMBER: _ClassVar[int]
    HIST_FIELD_NUMBER: _ClassVar[int]
    ERRNOS_FIELD_NUMBER: _ClassVar[int]
    pid: int
    comm: int
    nr: int
    name: int
    count: int
    errors: int
    total_ns: int
    min_ns: int
    max_ns: int
    hist: _containers.RepeatedScalarFieldContainer[int]
    errnos: _containers.ScalarMap[int, int]
    def __init__(self, pid: _Optional[int] = ..., comm: _Optional[int] = ..., nr: _Optional[int] = ..., name: _Optional[int] = ..., count: _Optional[int] = ..., errors: _Optional[int] = ..., total_ns: _Optional[int] = ..., min_ns: _Optional[int] = ..., max_ns: _Optional[int] = ..., hist: _Optional[_Iterable[int]] = ..., errnos: _Optional[_Mapping[int, int]] = ...) -> None: ...

class SyscallSamples(_message.Message):
    __slots__ = ("syscalls",)
    SYSCALLS_FIELD_NUMBER: _ClassVar[int]
    syscalls: _containers.RepeatedCompositeFieldContainer[SyscallSample]
    def __init__(self, syscalls: _Optional[_Iterable[_Union[SyscallSample, _Mapping]]] = ...) -> None: ...

class StackSamples(_message.Message):
    __slots__ = ("type", "stack", "value", "pid", "tid", "comm", "thread")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    STACK_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    TID_FIELD_NUMBER: _ClassVar[int]
    COMM_FIELD_NUMBER: _ClassVar[int]
    THREAD_FIELD_NUMBER: _ClassVar[int]
    type: str
    stack: _containers.RepeatedScalarFieldContainer[int]
    value: _containers.RepeatedScalarFieldContainer[int]
    pid: _containers.RepeatedScalarFieldContainer[int]
    tid: _containers.RepeatedScalarFieldContainer[int]
    comm: _containers.RepeatedScalarFieldContainer[int]
    thread: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, type: _Optional[str] = ..., stack: _Optional[_Iterable[int]] = ..., value: _Optional[_Iterable[int]] = ..., pid: _Optional[_Iterable[int]] = ..., tid: _Optional[_Iterable[int]] = ..., comm: _Optional[_Iterable[int]] = ..., thread: _Optional[_Iterable[int]] = ...) -> None: ...

class ProfileBatch(_message.Message):
    __slots__ = ("schema_version", "agent", "sequence", "window_start_ns", "window_end_ns", "strings", "frames", "stacks", "cpu", "lock", "syscall", "losses", "window_labels", "samples")
    class LossesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class WindowLabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    WINDOW_START_NS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_END_NS_FIELD_NUMBER: _ClassVar[int]
    STRINGS_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    STACKS_FIELD_NUMBER: _ClassVar[int]
    CPU_FIELD_NUMBER: _ClassVar[int]
    LOCK_FIELD_NUMBER: _ClassVar[int]
    SYSCALL_FIELD_NUMBER: _ClassVar[int]
    LOSSES_FIELD_NUMBER: _ClassVar[int]
    WINDOW_LABELS_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    schema_version: SchemaVersion
    agent: AgentIdentity
    sequence: int
    window_start_ns: int
    window_end_ns: int
    strings: _containers.RepeatedScalarFieldContainer[str]
    frames: Frames
    stacks: Stacks
    cpu: CpuSamples
    lock: LockSamples
    syscall: SyscallSamples
    losses: _containers.ScalarMap[str, int]
    window_labels: _containers.ScalarMap[str, str]
    samples: _containers.RepeatedCompositeFieldContainer[StackSamples]
    def __init__(self, schema_version: _Optional[_Union[SchemaVersion, str]] = ..., agent: _Optional[_Union[AgentIdentity, _Mapping]] = ..., sequence: _Optional[int] = ..., window_start_ns: _Optional[int] = ..., window_end_ns: _Optional[int] = ..., strings: _Optional[_Iterable[str]] = ..., frames: _Optional[_Union[Frames, _Mapping]] = ..., stacks: _Optional[_Union[Stacks, _Mapping]] = ..., cpu: _Optional[_Union[CpuSamples, _Mapping]] = ..., lock: _Optional[_Union[LockSamples, _Mapping]] = ..., syscall: _Optional[_Union[SyscallSamples, _Mapping]] = ..., losses: _Optional[_Mapping[str, int]] = ..., window_labels: _Optional[_Mapping[str, str]] = ..., samples: _Optional[_Iterable[_Union[StackSamples, _Mapping]]] = ...) -> None: ...
