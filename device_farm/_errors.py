"""The one exception device implementations raise for device (not program) failures."""

from __future__ import annotations

from pattune_common import PattuneError

__all__ = ["DeviceFault"]


class DeviceFault(PattuneError):
    """The device, not the program, failed: connection lost, upload failed, disk full.

    Raised by :meth:`Device.stage` and :meth:`Device.execute`; :meth:`Device.measure`
    turns it into a ``device_fault`` Measurement so the farm can run the job
    elsewhere. The message starts with the device's component name.
    """
