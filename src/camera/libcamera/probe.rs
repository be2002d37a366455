//! `picker probe`: what picker sees of the camera the config selects, on this machine, as a
//! [`Fixture`] (the model tests' format): every sensor mode configured alone and its limits
//! read after configure, the mode and crop picker would choose for the configured outputs,
//! the streams' strides and frame sizes, the controls' limits, the DMA heap. The camera is
//! configured but never started.

use libcamera::camera_manager::CameraManager;
use libcamera::properties;

use super::negotiate::{build, find_camera, limits, negotiate, sensor_facts};
use super::{Wanted, failed};
use crate::camera::fixture::{self, Chosen, Fixture, FixtureMode, Outputs, StreamFacts};
use crate::camera::{CameraError, libcamera_controls, pi_guard, plan};
use crate::dmabuf::{self, Heap};

pub(super) fn probe(wanted: &Wanted) -> Result<Fixture, CameraError> {
    let mgr =
        CameraManager::new().map_err(|e| failed("-", format!("cannot start libcamera: {e}")))?;
    let version = mgr.version().to_string();
    let cameras = mgr.cameras();
    if cameras.is_empty() {
        return Err(failed("-", "no camera: libcamera lists none"));
    }
    let cam = find_camera(&cameras, wanted)?;
    let id = cam.id().to_string();
    let model = cam
        .properties()
        .get::<properties::Model>()
        .ok()
        .map(|m| m.0)
        .unwrap_or_else(|| id.clone());
    let mut active = cam
        .acquire()
        .map_err(|e| failed(&id, format!("cannot acquire the camera (in use?): {e}")))?;
    let facts = sensor_facts(&active);
    let sensor = facts.as_ref().map(|_| model.as_str());
    let (orientation, _) = plan::orientation_for(wanted.orientation, sensor);
    let mut modes = Vec::new();
    if let Some((_, raw)) = &facts {
        for &mode in raw {
            let mut b = build(&active, wanted, Some(mode), orientation)?;
            if b.status.is_invalid() || active.configure(&mut b.config).is_err() {
                continue;
            }
            let l = limits(&active);
            modes.push(FixtureMode {
                size: (mode.width, mode.height),
                bit_depth: mode.bit_depth,
                scaler_crop_maximum: l.scaler_crop_max.map(|r| (r.x, r.y, r.width, r.height)),
                frame_duration_limits: l.frame_duration.map(|(min, max)| (min, Some(max))),
                // Not reported to applications; a driver-written fixture records them.
                line_length: None,
                pixel_rate: None,
            });
        }
    }
    let neg = negotiate(&mut active, wanted)?;
    let streams = neg.streams(&id)?;
    let frame_size = |i: usize| neg.config.get(i).map_or(0, |c| c.get_frame_size() as usize);
    let mut stream_facts = Vec::new();
    let mut add = |role: &str, layout: crate::camera::buffers::Layout, i: usize| {
        stream_facts.push(StreamFacts {
            role: role.to_string(),
            size: (layout.width, layout.height),
            format: format!("{:?}", layout.format),
            stride: layout.stride,
            frame_size: frame_size(i),
        });
    };
    if let Some((_, l)) = &streams.still {
        add("still", *l, neg.still);
    }
    add("video", streams.video.1, neg.video);
    let controls = serde_json::to_value(libcamera_controls::facts(active.controls())).ok();
    let heaps: &[&str] = if neg.has_sensor {
        &dmabuf::CONTIGUOUS_HEAPS
    } else {
        &[
            dmabuf::CONTIGUOUS_HEAPS[0],
            dmabuf::CONTIGUOUS_HEAPS[1],
            dmabuf::SYSTEM_HEAP,
        ]
    };
    let dma_heap = Heap::open_first(heaps).map(|h| h.path().display().to_string());
    let board = std::fs::read_to_string("/proc/device-tree/model").ok();
    let pipeline = board
        .as_deref()
        .and_then(pi_guard::handler_for_model)
        .filter(|_| neg.has_sensor)
        .map(|h| h.name().to_string());
    let board = board.map_or_else(
        || "this machine".to_string(),
        |b| b.trim_end_matches('\0').to_string(),
    );
    Ok(Fixture {
        format: fixture::FORMAT.to_string(),
        recorded_by: format!("picker probe {} on {board}", env!("CARGO_PKG_VERSION")),
        libcamera: version,
        pipeline,
        model,
        active_area: facts.as_ref().map(|(a, _)| *a),
        modes,
        outputs: Outputs {
            still: wanted.still,
            video: wanted.video,
        },
        chosen: Chosen {
            mode: neg.sensor_mode,
            crop: neg.crop.map(|r| (r.x, r.y, r.width, r.height)),
            frame_period_us: neg.frame_period_us,
        },
        streams: stream_facts,
        controls,
        dma_heap,
    })
}
