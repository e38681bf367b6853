"""A guest at frame level against a real passt started by the backend: DHCP, ARP, TCP."""
from __future__ import annotations

import socket
import threading

import pytest

import passt_packets as pk

GUEST_MAC = pk.mac("52:54:00:a1:b2:c3")
GUEST_IP = "10.0.2.15"
GATEWAY = "10.0.2.2"
URL = f"passt:?address={GUEST_IP}&gateway={GATEWAY}&netmask=24&ip=4"

pytestmark = pytest.mark.netns


def test_dhcp_discover_gets_an_offer_with_the_configured_address_and_router(passt_machine):
    run = passt_machine(URL)
    run.send(pk.dhcp_discover(GUEST_MAC, xid=0x1234ABCD))

    def offer(frame: bytes):
        eth = pk.parse_eth(frame)
        ip = pk.parse_ipv4(eth.payload) if eth.type == pk.ETH_IP else None
        if ip is None or ip.proto != pk.PROTO_UDP:
            return None
        sport, dport, payload = pk.parse_udp(ip.payload)
        if (sport, dport) != (67, 68):
            return None
        return eth, pk.parse_dhcp(payload)

    eth, dhcp = run.expect(offer, what="DHCP OFFER")
    assert dhcp.op == 2 and dhcp.xid == 0x1234ABCD
    assert dhcp.options[53] == bytes([2])                      # OFFER
    assert dhcp.yiaddr == GUEST_IP
    assert dhcp.options[3] == pk.ip4(GATEWAY)                   # router
    assert dhcp.options[1] == pk.ip4("255.255.255.0")          # netmask
    assert dhcp.options[26] == (1500).to_bytes(2, "big")        # MTU for a 1500-byte NIC
    assert dhcp.chaddr == GUEST_MAC
    assert eth.dst in (GUEST_MAC, pk.BROADCAST)
    assert run.backend.counters.rx_frames >= 1 and run.backend.counters.tx_frames == 1


def _arp_reply(frame: bytes):
    eth = pk.parse_eth(frame)
    if eth.type != pk.ETH_ARP:
        return None
    arp = pk.parse_arp(eth.payload)
    return (eth, arp) if arp.op == 2 else None


def test_arp_for_the_gateway_gets_a_reply_from_passt(passt_machine):
    run = passt_machine(URL)
    run.send(pk.arp_request(GUEST_MAC, pk.ip4(GUEST_IP), pk.ip4(GATEWAY)))
    eth, arp = run.expect(_arp_reply, what="ARP reply")
    assert arp.sender_ip == GATEWAY
    assert arp.target_ip == GUEST_IP and arp.target_mac == GUEST_MAC
    assert eth.dst == GUEST_MAC and eth.src == arp.sender_mac
    assert arp.sender_mac not in (b"\0" * 6, pk.BROADCAST)


class TinyGuestTcp:
    """A hand-made TCP client for one connection (test code only; passt is the real stack)."""

    def __init__(self, run, gateway_mac: bytes, sport: int, dport: int, dst_ip: str = GATEWAY):
        self.run, self.gw_mac, self.sport, self.dport = run, gateway_mac, sport, dport
        self.src, self.dst = pk.ip4(GUEST_IP), pk.ip4(dst_ip)
        self.dst_ip = dst_ip
        self.seq = 0x1000_0000
        self.ack = 0

    def segment(self, flags: int, payload: bytes = b"", options: bytes = b"") -> None:
        seg = pk.tcp(self.src, self.dst, self.sport, self.dport, self.seq, self.ack, flags,
                     payload, options=options)
        self.run.send(pk.ethernet(self.gw_mac, GUEST_MAC, pk.ETH_IP,
                                  pk.ipv4(self.src, self.dst, pk.PROTO_TCP, seg)))

    def mine(self, frame: bytes):
        eth = pk.parse_eth(frame)
        ip = pk.parse_ipv4(eth.payload) if eth.type == pk.ETH_IP else None
        if ip is None or ip.proto != pk.PROTO_TCP or ip.src != self.dst_ip or ip.dst != GUEST_IP:
            return None
        t = pk.parse_tcp(ip.payload)
        return t if (t.sport, t.dport) == (self.dport, self.sport) else None

    def connect(self) -> pk.Tcp:
        self.segment(pk.SYN, options=bytes([2, 4, 0x05, 0xB4]))          # MSS 1460
        synack = self.run.expect(self.mine, what="SYN-ACK")
        assert synack.flags & (pk.SYN | pk.ACK) == pk.SYN | pk.ACK, f"flags {synack.flags:#x}"
        assert synack.ack == self.seq + 1
        self.seq += 1
        self.ack = synack.seq + 1
        self.segment(pk.ACK)
        return synack


def _gateway_mac(run) -> bytes:
    run.send(pk.arp_request(GUEST_MAC, pk.ip4(GUEST_IP), pk.ip4(GATEWAY)))
    return run.expect(_arp_reply, what="ARP reply")[1].sender_mac


def _listen_in(netns, port: int) -> socket.socket:
    srv = netns.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(4)
    srv.settimeout(5)
    return srv


def test_tcp_to_the_gateway_reaches_a_server_on_the_host_loopback(passt_machine, passt_netns):
    srv = _listen_in(passt_netns, 18001)
    got: dict[str, bytes] = {}

    def serve() -> None:
        conn, peer = srv.accept()
        conn.settimeout(5)
        got["peer"] = peer[0].encode()
        data = b""
        while not data.endswith(b"\n"):
            chunk = conn.recv(100)
            if not chunk:
                break
            data += chunk
        got["data"] = data
        conn.sendall(b"pong:" + data)
        conn.close()

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    run = passt_machine(URL)
    tcp = TinyGuestTcp(run, _gateway_mac(run), sport=40001, dport=18001)
    tcp.connect()
    tcp.segment(pk.ACK | pk.PSH, b"ping\n")
    tcp.seq += 5
    reply = b""
    fin = False
    while not fin:
        seg = run.expect(tcp.mine, what="data from the host server")
        if seg.payload:
            if seg.seq + len(seg.payload) <= tcp.ack:       # a retransmission we already have
                tcp.segment(pk.ACK)
                continue
            assert seg.seq == tcp.ack, f"passt skipped data: seq {seg.seq}, expected {tcp.ack}"
            reply += seg.payload
            tcp.ack += len(seg.payload)
        if seg.flags & pk.FIN:
            tcp.ack += 1
            fin = True
        tcp.segment(pk.ACK)
    tcp.segment(pk.FIN | pk.ACK)
    server.join(5)
    srv.close()
    assert got["data"] == b"ping\n"
    assert got["peer"] == b"127.0.0.1"
    assert reply == b"pong:ping\n"


def test_tcp_syn_to_a_closed_port_on_the_gateway_is_refused(passt_machine):
    run = passt_machine(URL)
    tcp = TinyGuestTcp(run, _gateway_mac(run), sport=40002, dport=18002)
    tcp.segment(pk.SYN)
    seg = run.expect(tcp.mine, what="RST")
    assert seg.flags & pk.RST


def test_port_forward_turns_a_host_connection_into_a_syn_to_the_guest(passt_machine, passt_netns):
    run = passt_machine(URL + "&tcp=18080:80")
    _gateway_mac(run)                   # passt learns the guest's MAC and address
    client = passt_netns.socket()
    client.settimeout(5)
    client.setblocking(False)
    try:
        client.connect(("127.0.0.1", 18080))
    except BlockingIOError:
        pass

    def syn(frame: bytes):
        eth = pk.parse_eth(frame)
        ip = pk.parse_ipv4(eth.payload) if eth.type == pk.ETH_IP else None
        if ip is None or ip.proto != pk.PROTO_TCP:
            return None
        t = pk.parse_tcp(ip.payload)
        return (eth, ip, t) if t.flags & pk.SYN else None

    eth, ip, seg = run.expect(syn, what="SYN for the forwarded port")
    client.close()
    assert eth.dst == GUEST_MAC
    assert ip.dst == GUEST_IP and seg.dport == 80
    assert ip.src == GATEWAY            # the host's loopback shows up as the gateway
    assert not seg.flags & pk.ACK


def test_port_forward_listens_on_loopback_only_by_default(passt_machine, passt_netns):
    passt_machine(URL + "&tcp=18081:80")
    ok = passt_netns.socket()
    ok.settimeout(2)
    ok.connect(("127.0.0.1", 18081))                 # passt listens there...
    ok.close()
    client = passt_netns.socket()
    client.settimeout(2)
    with pytest.raises(ConnectionRefusedError):
        client.connect(("192.168.77.2", 18081))      # ...and not on the namespace's non-loopback address
    client.close()
