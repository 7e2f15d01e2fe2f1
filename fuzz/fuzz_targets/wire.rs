//! Any bytes through every `new_checked` view of `eipsim::wire` and all
//! their accessors and patchers: a view either refuses the buffer or
//! reads and writes every field without a panic (src/wire/mod.rs promises
//! it). The first bytes pick a few values (a delta, addresses, a MAC);
//! the rest is the buffer.

#![no_main]

use eipsim::wire::checksum::{self, Delta};
use eipsim::wire::ethernet::Mac;
use eipsim::wire::{arp, ethernet, icmp, ipv4, tcp, udp, virtio_net};
use libfuzzer_sys::fuzz_target;
use std::net::Ipv4Addr;

fuzz_target!(|data: &[u8]| {
    if data.len() < 12 {
        return;
    }
    let (head, b) = data.split_at(12);
    let a = Ipv4Addr::new(head[0], head[1], head[2], head[3]);
    let d = Delta::NONE
        .word(
            u16::from_be_bytes([head[4], head[5]]),
            u16::from_be_bytes([head[6], head[7]]),
        )
        .addr(
            u32::from(a),
            u32::from_be_bytes([head[8], head[9], head[10], head[11]]),
        );
    let mac = Mac([head[0], head[1], head[2], head[3], head[4], head[5]]);
    let _ = (
        checksum::sum(b),
        checksum::checksum(b),
        d.apply(0),
        d.apply_udp(0),
    );
    let _ = d.apply_partial(u16::from_be_bytes([head[0], head[1]]));
    let mut buf = b.to_vec();

    if let Ok(mut e) = ethernet::Frame::new_checked(&mut buf[..]) {
        let _ = (e.dst(), e.src(), e.ethertype(), e.payload().len());
        e.set_dst(mac);
        e.set_src(mac);
        e.set_ethertype(0x0800);
        let _ = e.payload_mut().len();
    }
    buf.copy_from_slice(b);
    if let Ok(mut p) = arp::Packet::new_checked(&mut buf[..]) {
        let _ = (p.operation(), p.sender_mac(), p.sender_ip());
        let _ = (p.target_mac(), p.target_ip());
        p.make_reply(mac);
    }
    buf.copy_from_slice(b);
    if let Ok(mut p) = ipv4::Packet::new_checked(&mut buf[..]) {
        let _ = (p.header_len(), p.total_len(), p.ident(), p.dont_frag());
        let _ = (p.more_frags(), p.frag_offset(), p.is_fragment(), p.ttl());
        let _ = (p.protocol(), p.checksum(), p.src(), p.dst(), p.addrs());
        let ok = p.verify_checksum();
        let _ = p.payload().len();
        p.set_src(a);
        p.set_dst(a);
        if p.ttl() > 0 {
            p.decrement_ttl();
        }
        // Patching addresses and the TTL keeps a right checksum right.
        assert!(
            !ok || p.verify_checksum(),
            "a patched header checksum went wrong"
        );
        let _ = p.set_checksum(0);
        let _ = p.payload_mut().len();
    }
    buf.copy_from_slice(b);
    if let Ok(p) = ipv4::Packet::new_truncated(&buf[..]) {
        let _ = (
            p.header_len(),
            p.total_len(),
            p.src(),
            p.dst(),
            p.protocol(),
        );
        let _ = p.payload().len();
    }
    if let Ok(mut t) = tcp::Packet::new_checked(&mut buf[..]) {
        let _ = (t.src_port(), t.dst_port(), t.flags(), t.checksum());
        t.adjust_checksum(d);
        t.adjust_partial_checksum(d);
    }
    buf.copy_from_slice(b);
    if let Ok(mut u) = udp::Packet::new_checked(&mut buf[..]) {
        let _ = (u.src_port(), u.dst_port(), u.checksum());
        u.adjust_checksum(d);
        u.adjust_partial_checksum(d);
    }
    buf.copy_from_slice(b);
    if let Ok(mut i) = icmp::Packet::new_checked(&mut buf[..]) {
        let _ = (i.msg_type(), i.code(), i.checksum(), i.ident());
        let _ = (i.is_error(), i.is_query(), i.quoted().len());
        let _ = icmp::check_quote(i.quoted());
        let _ = icmp::quoted_u16(i.quoted(), 2);
        i.adjust_checksum(d);
        let q = i.quoted_mut();
        let _ = icmp::patch_quoted_u16(q, 2, 7);
    }
    if let Ok(h) = virtio_net::Header::new_checked(b) {
        let r = virtio_net::Repr::parse(&h);
        let _ = (h.flags(), h.gso_type(), h.hdr_len(), h.gso_size());
        let _ = (h.csum_start(), h.csum_offset(), r.is_gso(), r.needs_csum());
        let mut out = [0u8; virtio_net::HEADER_LEN];
        r.emit(&mut out).expect("a header fits its own length");
        assert_eq!(
            &out[..],
            &b[..virtio_net::HEADER_LEN],
            "parse then emit is the identity"
        );
    }
});
