"""vmcu: fit int8 neural networks into the SRAM of microcontrollers."""

__version__ = "0.1.0"
