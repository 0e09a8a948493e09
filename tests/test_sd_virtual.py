"""The virtual printer's SD card: Marlin's SD commands and replies (table-driven, on the plain
model and on Marlin's serial model), an SD print the firmware runs itself at its move time
(positions and heaters move, the host's commands still answered), and the firmware side of
the binary file transfer: packets with sync numbers and checksums, resend requests, lost
oks, ABORT and the return to text."""

from __future__ import annotations

import pytest

from pipeline.config.schema import FaultSpec, MarlinModelSpec, VirtualSdSpec, VirtualSpec
from pipeline.protocol.bft import Packet, open_payload, packet
from pipeline.virtual.firmware import VirtualFirmware
from pipeline.virtual.marlin import make_firmware
from pipeline.virtual.sd.binary import BinaryReceiver
from pipeline.virtual.sd.card import SdCard
from pipeline.virtual.spec import FirmwareSpec

MODELS = ["plain", "marlin"]


def firmware(model: str, *, sd: VirtualSdSpec | None = None,
             faults: FaultSpec | None = None) -> VirtualFirmware:
    marlin = MarlinModelSpec(enabled=model == "marlin", baudrate=0, read_interval=0.0)
    virtual = VirtualSpec(faults=faults or FaultSpec(), sd=sd or VirtualSdSpec(), marlin=marlin)
    fw = make_firmware(FirmwareSpec(virtual=virtual))
    fw.data_to_send(0.0)  # the boot lines
    return fw


class Talk:
    def __init__(self, fw: VirtualFirmware) -> None:
        self.fw, self.now = fw, 0.0

    def __call__(self, *lines: str, wait: float = 0.01) -> list[str]:
        """Send unnumbered lines, one at a time; the replies (oks normalised to `ok`)."""
        out: list[str] = []
        for line in lines:
            self.fw.receive_data(line.encode() + b"\n", self.now)
            out += self.run(wait)
        return out

    def run(self, seconds: float) -> list[str]:
        out = []
        end = self.now + seconds
        while self.now < end:
            self.now = round(self.now + 0.001, 6)
            out += self.fw.data_to_send(self.now).decode().splitlines()
        return ["ok" if line.startswith("ok") else line for line in out]


def card_with(t: Talk, name: str = "cube.gco", body: str = "G28\nG1 X10 Y5\nM104 S0\n") -> None:
    assert t("M21") == ["echo:SD card ok", "ok"]
    t(f"M28 {name}", *body.splitlines(), "M29")


# command -> the replies after a card holding cube.gco (25 bytes written) was mounted
CASES = [
    ("M20", ["Begin file list", "CUBE.GCO 25", "End file list", "ok"]),
    ("M20 L", ["Begin file list", "CUBE.GCO 25 cube.gco", "End file list", "ok"]),
    ("M20 T", ["Begin file list", "CUBE.GCO 25 0x58210001", "End file list", "ok"]),
    ("M23 cube.gco", ["File opened: CUBE.GCO Size: 25", "File selected", "ok"]),
    ("M23 nothere.gco", ["echo:open failed, File: nothere.gco.", "ok"]),
    ("M27", ["Not SD printing", "ok"]),
    ("M27 C", ["Current file: (no file)", "ok"]),
    ("M30 cube.gco", ["File deleted:cube.gco", "ok"]),
    ("M30 nothere.gco", ["Deletion failed, File: nothere.gco.", "ok"]),
    ("M22", ["echo:SD card released", "ok"]),
    ("M28 B1", ["echo:Switching to Binary Protocol", "ok"]),
    ("M524", ["ok"]),
]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize(("command", "replies"), CASES, ids=[c for c, _ in CASES])
def test_sd_command_replies(model, command, replies):
    t = Talk(firmware(model))
    card_with(t)
    assert t(command) == replies


@pytest.mark.parametrize("model", MODELS)
def test_without_a_mounted_card_and_with_sd_off(model):
    t = Talk(firmware(model))
    assert t("M20") == ["echo:No SD card", "ok"]
    assert t("M23 a.gco") == ["echo:No SD card", "ok"]
    off = Talk(firmware(model, sd=VirtualSdSpec(enabled=False)))
    assert off("M21") == ["echo:SD init fail", "ok"]
    assert "Cap:SDCARD:1" not in off("M115")


@pytest.mark.parametrize("model", MODELS)
def test_writing_strips_numbers_checksums_and_comments_and_m29_closes(model):
    t = Talk(firmware(model))
    assert t("M21") == ["echo:SD card ok", "ok"]
    assert t("M28 long name.gcode") == ["Writing to file: LONGNA~1.GCO", "ok"]
    t("N1 G1 X1*" + str(_cs("N1 G1 X1")), "M105 ; a comment", "M29")
    f = t.fw.card.find("long name.gcode")
    assert f is not None and bytes(f.data) == b"G1 X1\r\nM105\r\n"
    assert t("M20 L")[1] == "LONGNA~1.GCO 13 long name.gcode"


def _cs(line: str) -> int:
    from pipeline.gcode import checksum
    return checksum(line.encode())


@pytest.mark.parametrize("model", MODELS)
def test_an_sd_print_runs_at_move_time_with_progress_pause_and_done(model):
    t = Talk(firmware(model))
    body = "".join(f"G1 X{i} Y{i % 7}\n" for i in range(1, 1000)) + "M104 S180\n"
    card_with(t, body=body)
    size = len(t.fw.card.find("cube.gco").data)
    assert t("M23 cube.gco", "M24")[-1] == "ok"
    assert t("M27 S0.05") == ["ok"]
    out = t.run(0.2)
    progress = [int(line.split()[-1].split("/")[0]) for line in out
                if line.startswith("SD printing")]
    assert progress and progress == sorted(progress) and 0 < progress[-1] < size
    assert t("M105")[-1].startswith("ok")   # the host's commands are answered meanwhile
    assert t("M25") == ["ok"]
    t.run(0.05)
    paused_at = t.fw.card.pos
    assert [x for x in t.run(0.2) if x.startswith("SD printing")] == [
        f"SD printing byte {paused_at}/{size}"] * 4
    t("M24")
    out = t.run(3.0)
    assert "Done printing file" in out
    assert t.fw._pos[0] == 999.0 and t.fw._tools[0].target == 180.0
    assert t("M27") == ["Not SD printing", "ok"]
    assert t.fw.sd_executed == 1000


@pytest.mark.parametrize("model", MODELS)
def test_m524_and_m26_restart(model):
    t = Talk(firmware(model))
    card_with(t, body="".join(f"G1 X{i}\n" for i in range(1, 400)))
    t("M23 cube.gco", "M24")
    t.run(0.05)
    assert t("M524") == ["ok"]
    assert t("M27") == ["Not SD printing", "ok"]
    assert t.fw.card.selected is None
    t("M23 cube.gco", "M26 S100")
    assert t.fw.card.pos == 100


# ---- the binary file transfer --------------------------------------------------------------

def receiver(**kw: object) -> BinaryReceiver:
    card = SdCard()
    card.mounted = True
    return BinaryReceiver(card, 96, **kw)  # type: ignore[arg-type]


def test_binary_transfer_happy_path_and_back_to_text():
    rx = receiver()
    out, rest = rx.feed(packet(Packet.SYNC, 0))
    assert out == ["ss0,96,0.1.0"]
    out, _ = rx.feed(packet(Packet.QUERY, 0))
    assert out == ["ok0", "PFT:version:0.1.0:compression:none"]
    out, _ = rx.feed(packet(Packet.OPEN, 1, open_payload("a.gco")))
    assert out == ["ok1", "PFT:success"]
    data = bytes(range(256)) * 3
    sync = 2
    for i in range(0, len(data), 96):
        out, _ = rx.feed(packet(Packet.WRITE, sync, data[i:i + 96]))
        assert out == [f"ok{sync}"]
        sync += 1
    out, _ = rx.feed(packet(Packet.FILE_CLOSE, sync))
    assert out == [f"ok{sync}", "PFT:success"]
    out, rest = rx.feed(packet(Packet.CLOSE, sync + 1) + b"M105\n")
    assert out == [f"ok{sync + 1}"] and rest == b"M105\n" and not rx.active
    assert bytes(rx.card.find("a.gco").data) == data


def test_binary_transfer_resends_drops_out_of_order_and_reacks_a_repeat():
    rx = receiver()
    rx.feed(packet(Packet.SYNC, 0))
    rx.feed(packet(Packet.QUERY, 0) + packet(Packet.OPEN, 1, open_payload("b.gco")))
    bad = bytearray(packet(Packet.WRITE, 2, b"x" * 50))
    bad[20] ^= 0xFF
    out, _ = rx.feed(bytes(bad) + packet(Packet.WRITE, 3, b"y" * 50))
    assert out == ["echo:Packet(2) payload corrupt", "echo:Resend request 1", "rs2"]
    out, _ = rx.feed(packet(Packet.WRITE, 2, b"x" * 50) + packet(Packet.WRITE, 3, b"y" * 50))
    assert out == ["ok2", "ok3"]
    out, _ = rx.feed(packet(Packet.WRITE, 3, b"y" * 50))  # its ok was lost: not written again
    assert out == ["ok3"]
    out, _ = rx.feed(packet(Packet.WRITE, 7, b"z"))
    assert out == ["echo:Datastream packet out of order", "echo:Resend request 1", "rs4"]
    head = bytearray(packet(Packet.WRITE, 4, b"z"))
    head[3] ^= 0x01
    out, _ = rx.feed(bytes(head))
    assert out[0].startswith("echo:Packet header(") and out[-1] == "rs4"
    assert bytes(rx.card.find("b.gco").data) == b"x" * 50 + b"y" * 50
    out, _ = rx.feed(packet(Packet.ABORT, 4))
    assert out == ["ok4", "PFT:success"] and rx.card.find("b.gco") is None


def test_binary_mode_over_the_serial_models_switches_and_returns():
    for model in MODELS:
        t = Talk(firmware(model))
        t("M21")
        assert t("M28 B1") == ["echo:Switching to Binary Protocol", "ok"]
        t.fw.receive_data(packet(Packet.SYNC, 0) + packet(Packet.CLOSE, 0), t.now)
        assert t.run(0.01) == ["ss0,96,0.1.0", "ok"]
        assert t("M105")[-1] == "ok" and t.fw.bft is None


def test_corrupt_packets_fault_is_rolled_per_packet():
    rx = receiver(corrupt=lambda: True)
    rx.feed(packet(Packet.SYNC, 0))
    out, _ = rx.feed(packet(Packet.QUERY, 0))
    assert out == ["ok0", "PFT:version:0.1.0:compression:none"]  # no payload: nothing to corrupt
    out, _ = rx.feed(packet(Packet.OPEN, 1, open_payload("c.gco")))
    assert out[-1] == "rs1"


def test_capabilities_follow_the_sd_options():
    t = Talk(firmware("plain", sd=VirtualSdSpec(binary_transfer=False, long_names=False)))
    caps = [x for x in t("M115") if x.startswith("Cap:")]
    assert "Cap:BINARY_FILE_TRANSFER:0" in caps and "Cap:EXTENDED_M20:0" in caps
    assert "Cap:AUTOREPORT_SD_STATUS:1" in caps
    t("M21")
    assert t("M28 B1 x.gco") == ["Writing to file: X.GCO", "ok"]  # no binary: a text write

