"""Attack captures replayed as a device's own outgoing traffic ("injected attacks").

N-BaIoT recorded infected devices' outgoing attack traffic; public DDoS captures are seen from the
victim side. `replay_as_device` rewrites a captured burst as if the device emitted it:

    src MAC -> device MAC;  src address -> the device's IPv4 (IPv4 and ARP packets) or IPv6 address
    (IPv6 packets; dropped when the device has none); non-IP frames are keyed by MAC, so their
    src address becomes the device MAC;  t -> t - t_first + start_time.

Destinations, ports, protocols, frame lengths and inter-packet gaps are unchanged.
"""

import typing

from tff_fcl.features import packets as packets_lib

_UNSPECIFIED = (bytes(4), bytes(16))  # 0.0.0.0 (DHCP discover) and ::


def device_address_at(packets: typing.Sequence[packets_lib.Packet], device_mac: bytes,
                      network: str, index: int) -> typing.Optional[bytes]:
  """The source address of the device's last outgoing `network` packet at or before `index`.

  Falls back to the device's first such address after `index`; None when it never sent one.
  Unspecified addresses (0.0.0.0, ::) are ignored.
  """
  def address(p):
    if p.src_mac == device_mac and p.network == network and p.src_ip not in _UNSPECIFIED:
      return p.src_ip
    return None

  for p in reversed(packets[:index + 1]):
    if address(p) is not None:
      return p.src_ip
  for p in packets[index + 1:]:
    if address(p) is not None:
      return p.src_ip
  return None


def replay_as_device(burst: typing.Sequence[packets_lib.Packet], device_mac: bytes,
                     device_ipv4: bytes, device_ipv6: typing.Optional[bytes],
                     start_time: float) -> list:
  """The burst re-addressed from the device and shifted so that it starts at `start_time`.

  Args:
    burst: captured packets in time order.
    device_mac: 6 bytes.
    device_ipv4: 4 bytes, the device's IPv4 address.
    device_ipv6: 16 bytes, or None (the burst's IPv6 packets are then dropped).
    start_time: the replayed first packet's timestamp, in seconds.
  """
  if len(device_mac) != 6 or len(device_ipv4) != 4:
    raise ValueError(f"device_mac must be 6 bytes and device_ipv4 4 bytes. Found {len(device_mac)} "
                     f"and {len(device_ipv4)}.")
  if device_ipv6 is not None and len(device_ipv6) != 16:
    raise ValueError(f"device_ipv6 must be 16 bytes. Found {len(device_ipv6)}.")
  if not burst:
    return []
  shift = start_time - burst[0].timestamp
  sources = {packets_lib.NETWORK_IPV4: device_ipv4, packets_lib.NETWORK_ARP: device_ipv4,
             packets_lib.NETWORK_IPV6: device_ipv6, packets_lib.NETWORK_OTHER: device_mac}
  replayed = []
  for p in burst:
    src_ip = sources[p.network]
    if src_ip is not None:
      replayed.append(p._replace(timestamp=p.timestamp + shift, src_mac=device_mac, src_ip=src_ip))
  return replayed
