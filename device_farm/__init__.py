"""What a build costs: devices, SSH, leases and the measurement protocol.

device_farm knows artifacts only (files + a command line + an expected output),
never layers or patterns. Start with :class:`LocalDevice` (this machine) or an
inventory of SSH devices (:func:`load_inventory`), measure lists of
:class:`MeasureJob` and get back :class:`Measurement` records.
"""

from device_farm._base import Device, DeviceReport
from device_farm._errors import DeviceFault
from device_farm._protocol import ProtocolConfig, parse_report, verify_report
from device_farm._records import (
    Artifact,
    ArtifactFile,
    MeasureJob,
    Measurement,
    MeasureStatus,
    RunResult,
    Verify,
    file_sha256,
)
from device_farm._ssh_connect import SSHTarget
from device_farm.farm import Farm, FarmConfig
from device_farm.inventory import DeviceSpec, Inventory, load_inventory
from device_farm.lease import DEFAULT_DB_URL, Lease, LeaseStore
from device_farm.local import LocalDevice
from device_farm.ssh import SSHDevice

__all__ = [
    "DEFAULT_DB_URL",
    "Artifact",
    "ArtifactFile",
    "Device",
    "DeviceFault",
    "DeviceReport",
    "DeviceSpec",
    "Farm",
    "FarmConfig",
    "Inventory",
    "Lease",
    "LeaseStore",
    "LocalDevice",
    "MeasureJob",
    "MeasureStatus",
    "Measurement",
    "ProtocolConfig",
    "RunResult",
    "SSHDevice",
    "SSHTarget",
    "Verify",
    "file_sha256",
    "load_inventory",
    "parse_report",
    "verify_report",
]
