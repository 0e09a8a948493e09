"""The virtual printer's SD card, sans-IO: the card and its files in memory (`card`), Marlin's
SD G-code handlers and the SD print the firmware runs itself (`commands`, a mixin of the
firmware model), and the firmware side of Marlin's binary file transfer (`binary`).

May import: the root modules, `config` and `protocol` (the BFT packet codec), and the
firmware model's own value modules. No trio, no IO.
"""
