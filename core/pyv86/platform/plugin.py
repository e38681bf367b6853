"""Built-in plugin registering the PC platform devices through the public hooks."""
from __future__ import annotations

from pyv86 import hookimpl
from pyv86.devices.base import DeviceRegistry
from pyv86.platform.debugexit import DebugExit
from pyv86.platform.i440fx import I440fx
from pyv86.platform.i8042 import I8042
from pyv86.platform.pic import PicPair
from pyv86.platform.piix3 import Piix3
from pyv86.platform.pit import Pit
from pyv86.platform.port80 import Port80
from pyv86.platform.port92 import Port92
from pyv86.platform.rtc import Rtc
from pyv86.platform.uart import Uart16550

PLATFORM_DEVICES = (DebugExit, PicPair, Pit, Rtc, Uart16550, I8042, Port80, Port92, I440fx, Piix3)


@hookimpl
def pyv86_register_devices(registry: DeviceRegistry) -> None:
    for cls in PLATFORM_DEVICES:
        registry.add(cls)
