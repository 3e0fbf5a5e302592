"""Ethernet frame parsing into the addresses the AfterImage streams are keyed by.

`parse_frame(record)` decodes Ethernet II / 802.3 (with any number of 802.1Q / 802.1ad VLAN tags),
IPv4, IPv6 (hop-by-hop, routing, destination-options and fragment extension headers), TCP, UDP,
ICMP / ICMPv6 and ARP, and returns a `Packet`, or None with a reason when the frame is malformed.

Addresses are raw bytes (MAC 6, IPv4 4, IPv6 16 bytes). `src_ip` / `dst_ip` are the network-layer
addresses the streams are keyed by:
  * IPv4 / IPv6: the IP header's addresses;
  * ARP: the sender / target protocol addresses of the ARP body;
  * any other EtherType (EAPOL, LLDP, 802.3 LLC, ...): the MAC addresses.
`src_port` / `dst_port` are TCP / UDP ports, or -1 for port-less packets (ICMP, ARP, other).
IP fragments: the first fragment carries the transport header; later fragments of the same datagram
(same addresses, protocol and IP identification) inherit its ports through `FragmentPorts`, and are
port-less when the first fragment was not seen.
"""

import collections
import ipaddress
import struct
import typing

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
ETHERTYPE_ARP = 0x0806
VLAN_ETHERTYPES = (0x8100, 0x88A8, 0x9100)
PROTOCOLS_WITH_PORTS = (6, 17)  # TCP, UDP
_IPV6_EXTENSION_HEADERS = (0, 43, 60)  # hop-by-hop, routing, destination options
_IPV6_FRAGMENT = 44

NETWORK_IPV4 = "ipv4"
NETWORK_IPV6 = "ipv6"
NETWORK_ARP = "arp"
NETWORK_OTHER = "other"


class Packet(typing.NamedTuple):
  """One parsed frame. `length` is the frame's original length on the wire, in bytes."""
  timestamp: float
  length: int
  src_mac: bytes
  dst_mac: bytes
  network: str  # NETWORK_IPV4 | NETWORK_IPV6 | NETWORK_ARP | NETWORK_OTHER
  src_ip: bytes
  dst_ip: bytes
  protocol: int  # IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6, ...), or -1 without IP
  src_port: int  # -1 when port-less
  dst_port: int


class FragmentPorts:
  """Remembers the ports of recent first IP fragments, keyed by (src, dst, protocol, id).

  Bounded: at most `capacity` datagrams, the oldest forgotten first.
  """

  def __init__(self, capacity: int = 4096):
    if capacity < 1:
      raise ValueError(f"FragmentPorts capacity must be positive. Found {capacity}.")
    self._capacity = capacity
    self._ports = collections.OrderedDict()

  def remember(self, key: tuple, ports: tuple):
    self._ports[key] = ports
    if len(self._ports) > self._capacity:
      self._ports.popitem(last=False)

  def lookup(self, key: tuple) -> tuple:
    return self._ports.get(key, (-1, -1))


def _transport_ports(protocol: int, data: bytes, start: int) -> typing.Optional[tuple]:
  if protocol not in PROTOCOLS_WITH_PORTS:
    return (-1, -1)
  if len(data) < start + 4:
    return None
  return struct.unpack_from("!HH", data, start)


def parse_frame(timestamp: float, length: int, data: bytes,
                fragments: FragmentPorts) -> typing.Tuple[typing.Optional[Packet], str]:
  """Parses one Ethernet frame.

  Args:
    timestamp: capture time in seconds.
    length: original frame length on the wire.
    data: captured bytes.
    fragments: the fragment-port memory of the capture being read (updated in place).

  Returns:
    (packet, "") on success, or (None, reason) for a malformed frame.
  """
  if len(data) < 14:
    return None, "short Ethernet header"
  dst_mac, src_mac = data[0:6], data[6:12]
  (ethertype,) = struct.unpack_from("!H", data, 12)
  position = 14
  while ethertype in VLAN_ETHERTYPES:
    if len(data) < position + 4:
      return None, "truncated VLAN tag"
    (ethertype,) = struct.unpack_from("!H", data, position + 2)
    position += 4

  if ethertype == ETHERTYPE_IPV4:
    if len(data) < position + 20 or data[position] >> 4 != 4:
      return None, "truncated or invalid IPv4 header"
    header_length = (data[position] & 0x0F) * 4
    if header_length < 20 or len(data) < position + header_length:
      return None, "truncated or invalid IPv4 header"
    identification, flags_offset, _, protocol = struct.unpack_from("!HHBB", data, position + 4)
    src_ip, dst_ip = data[position + 12:position + 16], data[position + 16:position + 20]
    fragment_offset = flags_offset & 0x1FFF
    more_fragments = bool(flags_offset & 0x2000)
    key = (src_ip, dst_ip, protocol, identification)
    if fragment_offset:
      ports = fragments.lookup(key)
    else:
      ports = _transport_ports(protocol, data, position + header_length)
      if ports is None:
        return None, "truncated transport header"
      if more_fragments:
        fragments.remember(key, ports)
    return Packet(timestamp, length, src_mac, dst_mac, NETWORK_IPV4, src_ip, dst_ip, protocol,
                  *ports), ""

  if ethertype == ETHERTYPE_IPV6:
    if len(data) < position + 40 or data[position] >> 4 != 6:
      return None, "truncated or invalid IPv6 header"
    protocol = data[position + 6]
    src_ip, dst_ip = data[position + 8:position + 24], data[position + 24:position + 40]
    position += 40
    fragment = None
    while protocol in _IPV6_EXTENSION_HEADERS or protocol == _IPV6_FRAGMENT:
      if len(data) < position + 8:
        return None, "truncated IPv6 extension header"
      next_header = data[position]
      if protocol == _IPV6_FRAGMENT:
        offset_flags, identification = struct.unpack_from("!HI", data, position + 2)
        fragment = (offset_flags >> 3, bool(offset_flags & 1), identification)
        size = 8
      else:
        size = (data[position + 1] + 1) * 8
      protocol, position = next_header, position + size
    if fragment is not None and fragment[0]:
      ports = fragments.lookup((src_ip, dst_ip, protocol, fragment[2]))
    else:
      ports = _transport_ports(protocol, data, position)
      if ports is None:
        return None, "truncated transport header"
      if fragment is not None and fragment[1]:
        fragments.remember((src_ip, dst_ip, protocol, fragment[2]), ports)
    return Packet(timestamp, length, src_mac, dst_mac, NETWORK_IPV6, src_ip, dst_ip, protocol,
                  *ports), ""

  if ethertype == ETHERTYPE_ARP:
    if len(data) < position + 8:
      return None, "truncated ARP header"
    hardware_size, protocol_size = data[position + 4], data[position + 5]
    sender = position + 8 + hardware_size
    target = sender + protocol_size + hardware_size
    if protocol_size == 0 or len(data) < target + protocol_size:
      return None, "truncated ARP body"
    return Packet(timestamp, length, src_mac, dst_mac, NETWORK_ARP,
                  data[sender:sender + protocol_size], data[target:target + protocol_size],
                  -1, -1, -1), ""

  return Packet(timestamp, length, src_mac, dst_mac, NETWORK_OTHER, src_mac, dst_mac, -1, -1, -1), ""


def format_mac(mac: bytes) -> str:
  return ":".join(f"{b:02x}" for b in mac)


def parse_mac(text: str) -> bytes:
  """'aa:bb:cc:dd:ee:ff' (or with '-') -> 6 bytes; ValueError naming the text otherwise."""
  parts = text.strip().replace("-", ":").split(":")
  try:
    mac = bytes(int(part, 16) for part in parts)
  except ValueError:
    mac = b""
  if len(mac) != 6 or any(len(part) not in (1, 2) for part in parts):
    raise ValueError(f"Invalid MAC address {text!r}; expected six hex bytes like 20:f8:5e:ca:91:52.")
  return mac


def format_address(address: bytes) -> str:
  """IPv4 / IPv6 in their usual notation; 6-byte keys (MACs) as a MAC; anything else as hex."""
  if len(address) in (4, 16):
    return str(ipaddress.ip_address(address))
  if len(address) == 6:
    return format_mac(address)
  return address.hex()


def parse_ip(text: str) -> bytes:
  try:
    return ipaddress.ip_address(text.strip()).packed
  except ValueError:
    raise ValueError(f"Invalid IP address {text!r}.") from None
