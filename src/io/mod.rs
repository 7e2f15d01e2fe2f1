//! Everything that moves frames in and out of the engine: capture files
//! and replay (live TAP ports come later), plus the report writers.

pub mod capture;
pub mod coalesce;
pub mod driver;
pub mod events;
pub mod expect;
pub mod html;
pub mod live;
pub mod packet;
pub mod port;
pub mod replay;
pub mod report;
pub mod steer;
pub mod tap;
pub mod trace;
