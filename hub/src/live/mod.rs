//! Live video for the duty room (issue 9, in progress): the camera's own H.264, muxed once
//! per camera into fragmented MP4 ([`fmp4`]: an init segment, then one fragment per access
//! unit) and kept in a bounded ring that every viewer reads through its own cursor
//! ([`ring`]). Nothing here decodes or transcodes.

pub mod fmp4;
pub mod ring;
