"""The one exception device implementations raise for device (not program) failures."""

from __future__ import annotations

from pattune_common import PattuneError

__all__ = ["DeviceFault", "StagedFilesLost"]


class DeviceFault(PattuneError):
    """The device, not the program, failed: connection lost, upload failed, disk full.

    Raised by :meth:`Device.stage` and :meth:`Device.execute`; :meth:`Device.measure`
    turns it into a ``device_fault`` Measurement so the farm can run the job
    elsewhere. The message starts with the device's component name.
    """


class StagedFilesLost(DeviceFault):
    """The artifact's directory vanished on the device (its work dir was cleaned).

    The protocol stages the files again and retries once before recording a fault.
    """
