//! The ARM PL011 UART (PrimeCell r1p5, as QEMU virt models it): its
//! register block and what the UART driver does with it. Nothing here
//! knows about seL4: the driver hands in the mapped base address, and the
//! host tests hand in plain memory.
#![no_std]

use tock_registers::interfaces::{ReadWriteable, Readable, Writeable};
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};
use tock_registers::{register_bitfields, register_structs};

register_bitfields! {
    u32,
    /// Data register: the byte, and its receive errors.
    pub DR [
        DATA OFFSET(0) NUMBITS(8) [],
        FE OFFSET(8) NUMBITS(1) [],
        PE OFFSET(9) NUMBITS(1) [],
        BE OFFSET(10) NUMBITS(1) [],
        OE OFFSET(11) NUMBITS(1) [],
    ],
    /// Flag register.
    pub FR [
        BUSY OFFSET(3) NUMBITS(1) [],
        RXFE OFFSET(4) NUMBITS(1) [],
        TXFF OFFSET(5) NUMBITS(1) [],
        RXFF OFFSET(6) NUMBITS(1) [],
        TXFE OFFSET(7) NUMBITS(1) [],
    ],
    /// Line control.
    pub LCR_H [
        FEN OFFSET(4) NUMBITS(1) [],
        WLEN OFFSET(5) NUMBITS(2) [Bits8 = 3],
    ],
    /// Control.
    pub CR [
        UARTEN OFFSET(0) NUMBITS(1) [],
        TXE OFFSET(8) NUMBITS(1) [],
        RXE OFFSET(9) NUMBITS(1) [],
    ],
    /// Interrupt mask set/clear, raw and masked status, clear: same layout.
    pub INT [
        RX OFFSET(4) NUMBITS(1) [],
        TX OFFSET(5) NUMBITS(1) [],
        RT OFFSET(6) NUMBITS(1) [],
        FE OFFSET(7) NUMBITS(1) [],
        PE OFFSET(8) NUMBITS(1) [],
        BE OFFSET(9) NUMBITS(1) [],
        OE OFFSET(10) NUMBITS(1) [],
        ALL OFFSET(0) NUMBITS(11) [],
    ],
}

register_structs! {
    #[allow(non_snake_case)]
    pub Registers {
        (0x000 => pub DR: ReadWrite<u32, DR::Register>),
        (0x004 => pub RSR_ECR: ReadWrite<u32>),
        (0x008 => _reserved0),
        (0x018 => pub FR: ReadOnly<u32, FR::Register>),
        (0x01c => _reserved1),
        (0x024 => pub IBRD: ReadWrite<u32>),
        (0x028 => pub FBRD: ReadWrite<u32>),
        (0x02c => pub LCR_H: ReadWrite<u32, LCR_H::Register>),
        (0x030 => pub CR: ReadWrite<u32, CR::Register>),
        (0x034 => pub IFLS: ReadWrite<u32>),
        (0x038 => pub IMSC: ReadWrite<u32, INT::Register>),
        (0x03c => pub RIS: ReadOnly<u32, INT::Register>),
        (0x040 => pub MIS: ReadOnly<u32, INT::Register>),
        (0x044 => pub ICR: WriteOnly<u32, INT::Register>),
        (0x048 => @END),
    }
}

/// A PL011 at a mapped address.
pub struct Pl011 {
    regs: *const Registers,
}

impl Pl011 {
    /// # Safety
    /// `base` maps a PL011's registers (device memory) for the driver's
    /// life, and nothing else drives the device.
    pub const unsafe fn new(base: *mut u8) -> Pl011 {
        Pl011 { regs: base as *const Registers }
    }

    fn r(&self) -> &Registers {
        // SAFETY: see `new`.
        unsafe { &*self.regs }
    }

    /// Enables the UART for 8-bit data, receive and transmit, and turns on
    /// the receive and receive-timeout interrupts (the FIFO stays on: the
    /// timeout interrupt reports a partly filled FIFO).
    pub fn init(&self) {
        let r = self.r();
        r.ICR.write(INT::ALL::SET);
        r.LCR_H.modify(LCR_H::WLEN::Bits8 + LCR_H::FEN::SET);
        r.CR.modify(CR::UARTEN::SET + CR::TXE::SET + CR::RXE::SET);
        r.IMSC.write(INT::RX::SET + INT::RT::SET);
    }

    /// The next received byte, if any (bytes with receive errors are
    /// still returned; a console shows them as garbage).
    pub fn read_byte(&self) -> Option<u8> {
        let r = self.r();
        if r.FR.is_set(FR::RXFE) {
            None
        } else {
            Some(r.DR.read(DR::DATA) as u8)
        }
    }

    /// Reads every byte in the receive FIFO into `out`; returns the count.
    pub fn read_into(&self, out: &mut [u8]) -> usize {
        let mut n = 0;
        while n < out.len() {
            match self.read_byte() {
                Some(b) => {
                    out[n] = b;
                    n += 1;
                }
                None => break,
            }
        }
        n
    }

    /// Writes `bytes`, waiting while the transmit FIFO is full.
    pub fn write(&self, bytes: &[u8]) {
        let r = self.r();
        for &b in bytes {
            while r.FR.is_set(FR::TXFF) {
                core::hint::spin_loop();
            }
            r.DR.write(DR::DATA.val(b as u32));
        }
    }

    /// Clears the receive interrupts. Call it before draining the FIFO: a
    /// byte that arrives after the drain then raises the interrupt again.
    pub fn clear_rx_interrupts(&self) {
        self.r().ICR.write(INT::RX::SET + INT::RT::SET + INT::OE::SET);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn layout_matches_the_trm() {
        assert_eq!(size_of::<Registers>(), 0x48);
        assert_eq!(offset_of!(Registers, FR), 0x18);
        assert_eq!(offset_of!(Registers, LCR_H), 0x2c);
        assert_eq!(offset_of!(Registers, IMSC), 0x38);
        assert_eq!(offset_of!(Registers, ICR), 0x44);
    }

    /// Plain memory standing in for the device.
    #[repr(C, align(4096))]
    struct Fake([u32; 0x48 / 4]);

    #[test]
    fn empty_fifo_reads_nothing_and_a_byte_is_read() {
        let mut m = Fake([0; 18]);
        m.0[0x18 / 4] = 1 << 4; // RXFE
        let u = unsafe { Pl011::new(m.0.as_mut_ptr().cast()) };
        assert_eq!(u.read_byte(), None);
        let mut buf = [0u8; 4];
        assert_eq!(u.read_into(&mut buf), 0);
        m.0[0x18 / 4] = 0;
        m.0[0] = 0x100 | b'x' as u32; // a framing error is still a byte
        let u = unsafe { Pl011::new(m.0.as_mut_ptr().cast()) };
        assert_eq!(u.read_byte(), Some(b'x'));
    }

    #[test]
    fn init_enables_rx_interrupts_and_write_puts_bytes_in_dr() {
        let mut m = Fake([0; 18]);
        let u = unsafe { Pl011::new(m.0.as_mut_ptr().cast()) };
        u.init();
        u.write(b"ok");
        let imsc = m.0[0x38 / 4];
        assert_eq!(imsc, (1 << 4) | (1 << 6));
        assert_eq!(m.0[0x30 / 4] & 0x301, 0x301);
        assert_eq!(m.0[0x2c / 4] & (3 << 5), 3 << 5);
        assert_eq!(m.0[0] as u8, b'k');
        assert_eq!(m.0[0x44 / 4], 0x7ff);
    }
}
