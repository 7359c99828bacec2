//! Silent MP3 files made in code, so the emulator can serve recordings that real players and
//! uploaders accept without shipping audio.
//!
//! Every frame is MPEG-1 Layer III, 32 kbit/s, 48 kHz, mono, no CRC, no padding: at that rate a
//! frame is exactly `144 * 32000 / 48000 = 96` bytes and holds 1152 samples (24 ms). The side
//! information and main data are all zeros: `part2_3_length = 0` and `global_gain = 0` decode
//! to silence, the usual way encoders write digital silence.

/// Samples per MPEG-1 Layer III frame.
pub const SAMPLES_PER_FRAME: u32 = 1152;
/// The sampling rate of the generated files.
pub const SAMPLE_RATE: u32 = 48_000;
/// Bytes per generated frame.
pub const FRAME_BYTES: usize = 96;

/// The 4-byte frame header:
/// - `0xFF 0xFB`: 11 sync bits, version `11` (MPEG-1), layer `01` (III), protection bit 1 (no CRC);
/// - `0x14`: bitrate index `0001` (32 kbit/s), sampling index `01` (48 kHz), no padding, private 0;
/// - `0xC4`: channel mode `11` (mono), mode extension `00`, not copyrighted, original, no emphasis.
const HEADER: [u8; 4] = [0xFF, 0xFB, 0x14, 0xC4];

/// One silent frame.
fn frame() -> [u8; FRAME_BYTES] {
    let mut f = [0u8; FRAME_BYTES];
    f[..4].copy_from_slice(&HEADER);
    f
}

/// A silent MP3 of about `seconds` (at least one frame).
pub fn silent(seconds: f64) -> Vec<u8> {
    let seconds = if seconds.is_finite() {
        seconds.max(0.0)
    } else {
        0.0
    };
    let frames =
        ((seconds * f64::from(SAMPLE_RATE)) / f64::from(SAMPLES_PER_FRAME)).ceil() as usize;
    let frames = frames.max(1);
    let one = frame();
    let mut out = Vec::with_capacity(frames * FRAME_BYTES);
    for _ in 0..frames {
        out.extend_from_slice(&one);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_second_is_whole_frames_with_valid_headers() {
        let data = silent(1.0);
        // 48000 / 1152 = 41.67 -> 42 frames.
        assert_eq!(data.len(), 42 * FRAME_BYTES);
        for chunk in data.chunks(FRAME_BYTES) {
            assert_eq!(chunk[0], 0xFF);
            assert_eq!(chunk[1] & 0xE0, 0xE0, "sync");
            assert_eq!((chunk[1] >> 3) & 0b11, 0b11, "MPEG-1");
            assert_eq!((chunk[1] >> 1) & 0b11, 0b01, "Layer III");
            assert!(chunk[4..].iter().all(|b| *b == 0));
        }
    }

    #[test]
    fn nonsense_durations_give_one_frame() {
        assert_eq!(silent(-5.0).len(), FRAME_BYTES);
        assert_eq!(silent(f64::NAN).len(), FRAME_BYTES);
        assert_eq!(silent(0.0).len(), FRAME_BYTES);
    }
}
