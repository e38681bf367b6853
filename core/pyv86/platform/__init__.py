"""The PC platform: the chips every pyv86 PC has (PIC, PIT, RTC, UART, PCI bridges...)."""
