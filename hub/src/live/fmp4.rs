//! Fragmented MP4 for Media Source Extensions, built once per camera: an init segment from the
//! stream's H.264 decoder configuration (SPS/PPS), then **one fragment per access unit**
//! (`moof` + `mdat`), so a viewer is never a fragment's duration behind the camera.
//!
//! The boxes are mp4-atom's; only the `mdat` header (size and type, 8 bytes) is written here,
//! so that the access unit is copied once, straight into the fragment. Samples keep the
//! camera's AVC format (4-byte NAL lengths), as retina delivers it: nothing is transcoded.

use bytes::Bytes;
use mp4_atom::{
    Atom, Avc1, Avcc, Dinf, Dref, Encode, Ftyp, Hdlr, Mdhd, Mdia, Mfhd, Minf, Moof, Moov, Mvex,
    Mvhd, Stbl, Stco, Stsc, Stsd, Stsz, Stts, Tfdt, Tfhd, Tkhd, Traf, Trak, Trex, Trun, TrunEntry,
    Url, Visual, Vmhd,
};

/// The media timescale: H.264 over RTP counts at 90 kHz.
pub const TIMESCALE: u32 = 90_000;

/// The one track's id.
const TRACK: u32 = 1;

/// `sample_depends_on = 2` (an I frame depends on nothing): a sync sample.
const SYNC_SAMPLE: u32 = 0x0200_0000;
/// `sample_depends_on = 1`, `sample_is_non_sync_sample = 1`.
const NON_SYNC_SAMPLE: u32 = 0x0101_0000;

/// Why a stream cannot be muxed.
#[derive(Debug, thiserror::Error)]
pub enum MuxError {
    #[error("the camera's H.264 decoder configuration (avcC) is not valid: {0}")]
    Config(String),
    #[error("writing an MP4 box failed: {0}")]
    Encode(String),
}

/// What the browser needs to play a stream: the init segment and its codec string.
#[derive(Debug, Clone)]
pub struct Init {
    /// `ftyp` + `moov`.
    pub segment: Bytes,
    /// RFC 6381, e.g. `avc1.64001f`, for `MediaSource.isTypeSupported`.
    pub codec: String,
    pub width: u16,
    pub height: u16,
}

/// The RFC 6381 codec string of an H.264 stream: profile, constraint flags and level, as the
/// SPS (and the avcC copied from it) carry them.
pub fn codec_string(avcc: &Avcc) -> String {
    format!(
        "avc1.{:02x}{:02x}{:02x}",
        avcc.avc_profile_indication, avcc.profile_compatibility, avcc.avc_level_indication
    )
}

/// The init segment of a stream whose decoder configuration record (the body of an `avcC`
/// box, as retina's `VideoParameters::extra_data` gives it) is `avcc`.
pub fn init(avcc: &[u8], width: u16, height: u16) -> Result<Init, MuxError> {
    let avcc = Avcc::decode_body(&mut &avcc[..]).map_err(|e| MuxError::Config(e.to_string()))?;
    if avcc.sequence_parameter_sets.is_empty() || avcc.picture_parameter_sets.is_empty() {
        return Err(MuxError::Config("it holds no SPS or no PPS".into()));
    }
    if avcc.length_size != 4 {
        return Err(MuxError::Config(format!(
            "NAL lengths of {} bytes (the samples are passed on with 4)",
            avcc.length_size
        )));
    }
    let codec = codec_string(&avcc);
    let ftyp = Ftyp {
        major_brand: b"isom".into(),
        minor_version: 0x200,
        compatible_brands: vec![b"isom".into(), b"iso6".into(), b"avc1".into(), b"mp41".into()],
    };
    let avc1 = Avc1 {
        visual: Visual {
            data_reference_index: 1,
            width,
            height,
            horizresolution: 72.into(),
            vertresolution: 72.into(),
            frame_count: 1,
            compressor: "".into(),
            depth: 24,
        },
        avcc,
        ..Default::default()
    };
    let moov = Moov {
        mvhd: Mvhd {
            timescale: 1000,
            rate: 1.into(),
            volume: 1.into(),
            next_track_id: TRACK + 1,
            ..Default::default()
        },
        mvex: Some(Mvex {
            mehd: None,
            trex: vec![Trex {
                track_id: TRACK,
                default_sample_description_index: 1,
                ..Default::default()
            }],
        }),
        trak: vec![Trak {
            tkhd: Tkhd {
                track_id: TRACK,
                enabled: true,
                in_movie: true,
                width: width.into(),
                height: height.into(),
                ..Default::default()
            },
            mdia: Mdia {
                mdhd: Mdhd { timescale: TIMESCALE, language: "und".into(), ..Default::default() },
                hdlr: Hdlr { handler: b"vide".into(), name: "video".into() },
                minf: Minf {
                    vmhd: Some(Vmhd::default()),
                    dinf: Dinf { dref: Dref { urls: vec![Url::default()] } },
                    stbl: Stbl {
                        stsd: Stsd { codecs: vec![avc1.into()] },
                        stts: Stts::default(),
                        stsc: Stsc::default(),
                        stsz: Stsz::default(),
                        stco: Some(Stco::default()),
                        ..Default::default()
                    },
                    ..Default::default()
                },
            },
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut out = Vec::with_capacity(1024);
    ftyp.encode(&mut out).map_err(|e| MuxError::Encode(e.to_string()))?;
    moov.encode(&mut out).map_err(|e| MuxError::Encode(e.to_string()))?;
    Ok(Init { segment: out.into(), codec, width, height })
}

/// One access unit as a fragment: `moof` (sequence number, decode time, one sample of
/// `duration` ticks at 90 kHz, sync or not) and `mdat` holding `sample` as given.
pub fn fragment(
    sequence: u32,
    decode_time: u64,
    duration: u32,
    sample: &[u8],
    key: bool,
) -> Result<Bytes, MuxError> {
    let size = u32::try_from(sample.len())
        .map_err(|_| MuxError::Encode(format!("an access unit of {} bytes", sample.len())))?;
    let moof = |data_offset: i32| Moof {
        mfhd: Mfhd { sequence_number: sequence },
        traf: vec![Traf {
            tfhd: Tfhd { track_id: TRACK, default_base_is_moof: true, ..Default::default() },
            tfdt: Some(Tfdt { base_media_decode_time: decode_time }),
            trun: vec![Trun {
                data_offset: Some(data_offset),
                entries: vec![TrunEntry {
                    duration: Some(duration),
                    size: Some(size),
                    flags: Some(if key { SYNC_SAMPLE } else { NON_SYNC_SAMPLE }),
                    cts: None,
                }],
            }],
            ..Default::default()
        }],
    };
    let mut head = Vec::with_capacity(128);
    moof(0).encode(&mut head).map_err(|e| MuxError::Encode(e.to_string()))?;
    // The sample starts after the moof and the mdat header; the offset's own size does not
    // depend on its value, so the second encoding has the first one's length.
    let offset = head.len() + 8;
    head.clear();
    moof(offset as i32).encode(&mut head).map_err(|e| MuxError::Encode(e.to_string()))?;
    let mut out = Vec::with_capacity(head.len() + 8 + sample.len());
    out.extend_from_slice(&head);
    out.extend_from_slice(&(8 + size).to_be_bytes());
    out.extend_from_slice(b"mdat");
    out.extend_from_slice(sample);
    Ok(out.into())
}

/// The decode time of `pts` (90 kHz ticks since the stream's first unit) and its duration up to
/// the next, estimated from the previous unit's when the next is not known yet.
pub fn ticks(prev: Option<i64>, pts: i64) -> u32 {
    match prev {
        Some(p) if pts > p => u32::try_from(pts - p).unwrap_or(3000),
        // 30 fps until there is a difference to measure.
        _ => 3000,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mp4_atom::{Decode, Mdat};

    /// An avcC body: version 1, High profile (100), level 3.1, 4-byte lengths, one SPS and
    /// one PPS (those of mp4-atom's own H.264 sample).
    fn avcc_body() -> Vec<u8> {
        let sps: &[u8] = &[
            103, 100, 0, 31, 172, 217, 128, 80, 5, 187, 1, 106, 2, 2, 2, 128, 0, 0, 3, 0, 128, 0,
            0, 30, 7, 140, 24, 205,
        ];
        let pps: &[u8] = &[104, 233, 123, 44, 139];
        let mut b = vec![1, 100, 0, 31, 0xff, 0xe1];
        b.extend_from_slice(&(sps.len() as u16).to_be_bytes());
        b.extend_from_slice(sps);
        b.push(1);
        b.extend_from_slice(&(pps.len() as u16).to_be_bytes());
        b.extend_from_slice(pps);
        b
    }

    #[test]
    fn the_init_segment_parses_back_with_the_cameras_parameters() {
        let init = init(&avcc_body(), 1280, 720).unwrap();
        assert_eq!(init.codec, "avc1.64001f");
        let mut buf = &init.segment[..];
        let ftyp = Ftyp::decode(&mut buf).unwrap();
        assert_eq!(ftyp.major_brand, b"isom".into());
        let moov = Moov::decode(&mut buf).unwrap();
        assert!(buf.is_empty(), "nothing after moov");
        let trak = &moov.trak[0];
        assert_eq!(trak.tkhd.track_id, TRACK);
        assert_eq!(trak.mdia.mdhd.timescale, TIMESCALE);
        assert_eq!(moov.mvex.as_ref().unwrap().trex[0].track_id, TRACK);
        let mp4_atom::Codec::Avc1(avc1) = &trak.mdia.minf.stbl.stsd.codecs[0] else {
            panic!("not avc1: {:?}", trak.mdia.minf.stbl.stsd.codecs)
        };
        assert_eq!((avc1.visual.width, avc1.visual.height), (1280, 720));
        assert_eq!(avc1.avcc.sequence_parameter_sets[0][..4], [103, 100, 0, 31]);
        assert_eq!(avc1.avcc.picture_parameter_sets.len(), 1);
    }

    #[test]
    fn a_configuration_without_parameter_sets_is_refused() {
        let mut b = avcc_body();
        b.truncate(6);
        b[5] = 0xe0; // no SPS
        b.push(0); // no PPS
        assert!(init(&b, 1, 1).is_err());
        assert!(init(b"\x01", 1, 1).is_err());
    }

    #[test]
    fn each_access_unit_is_one_fragment_whose_offset_points_at_its_sample() {
        let sample: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        for (seq, key) in [(1u32, true), (2, false)] {
            let frag = fragment(seq, 90_000 * seq as u64, 3000, &sample, key).unwrap();
            let mut buf = &frag[..];
            let moof = Moof::decode(&mut buf).unwrap();
            let moof_len = frag.len() - buf.len();
            let mdat = Mdat::decode(&mut buf).unwrap();
            assert!(buf.is_empty());
            assert_eq!(mdat.data, sample);
            assert_eq!(moof.mfhd.sequence_number, seq);
            let traf = &moof.traf[0];
            assert!(traf.tfhd.default_base_is_moof);
            assert_eq!(traf.tfdt.as_ref().unwrap().base_media_decode_time, 90_000 * seq as u64);
            let run = &traf.trun[0];
            assert_eq!(run.entries.len(), 1, "one sample per fragment");
            let e = &run.entries[0];
            assert_eq!((e.duration, e.size), (Some(3000), Some(5000)));
            assert_eq!(e.flags, Some(if key { SYNC_SAMPLE } else { NON_SYNC_SAMPLE }));
            // The data offset (from the moof's start) lands on the sample's first byte.
            let at = run.data_offset.unwrap() as usize;
            assert_eq!(at, moof_len + 8);
            assert_eq!(&frag[at..at + 16], &sample[..16]);
        }
    }

    #[test]
    fn durations_follow_the_timestamps() {
        assert_eq!(ticks(None, 0), 3000);
        assert_eq!(ticks(Some(0), 6000), 6000);
        assert_eq!(ticks(Some(6000), 6000), 3000, "a repeated timestamp keeps a duration");
    }
}
