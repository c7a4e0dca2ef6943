//! A thin wrapper over a configured libavfilter graph: one buffer source, N buffer sinks.

use ffmpeg_next as ffmpeg;
use ffmpeg_next::ffi;
use ffmpeg_next::{filter, Rational};

use crate::ffutil::ff_err;
use crate::MediaError;

/// `AVERROR(EAGAIN)`: nothing available right now.
pub(crate) fn is_again(e: &ffmpeg::Error) -> bool {
    matches!(e, ffmpeg::Error::Other { errno } if *errno == ffmpeg::error::EAGAIN)
}

/// A configured filter graph with raw handles on its source and sinks.
///
/// The handles are looked up once, not by name for every frame (which is what ffmpeg-next's
/// `Graph::get` would do). They point at filter contexts owned by `_graph`: valid for as long as
/// this struct, which keeps the graph alive and is neither `Clone` nor `Send`.
pub(crate) struct Graph {
    _graph: filter::Graph,
    src: *mut ffi::AVFilterContext,
    sinks: Vec<*mut ffi::AVFilterContext>,
}

impl Graph {
    /// Feed one frame to the source (taking its data).
    pub fn push(&mut self, frame: &mut ffmpeg::Frame) -> Result<(), MediaError> {
        // SAFETY: `self.src` is the graph's live buffer source (see the struct) and `frame` a
        // valid frame we borrow mutably: the call moves its references into the graph and
        // leaves it empty, as the API documents for flags 0.
        let r = unsafe { ffi::av_buffersrc_add_frame_flags(self.src, frame.as_mut_ptr(), 0) };
        if r < 0 {
            return Err(ff_err("feeding the filter graph", ffmpeg::Error::from(r)));
        }
        Ok(())
    }

    /// End the input at `pts` (in the source's time base), so the filters flush.
    pub fn close(&mut self, pts: i64) -> Result<(), MediaError> {
        // SAFETY: `self.src` is the graph's live buffer source (see the struct).
        let r = unsafe { ffi::av_buffersrc_close(self.src, pts, 0) };
        if r < 0 {
            return Err(ff_err("closing the filter graph", ffmpeg::Error::from(r)));
        }
        Ok(())
    }

    /// Next frame from sink `i`: Ok(true) with a frame, Ok(false) when none is ready / at EOF.
    pub fn pull(&mut self, i: usize, frame: &mut ffmpeg::Frame) -> Result<bool, MediaError> {
        // SAFETY: `frame` is a valid frame we borrow mutably. av_buffersink_get_frame moves a
        // frame into it and needs it empty, hence the unref first (which a plain
        // `Sink::frame` would not do, leaking the previous picture).
        unsafe { ffi::av_frame_unref(frame.as_mut_ptr()) };
        // SAFETY: `self.sinks[i]` is one of the graph's live buffer sinks (see the struct;
        // indexing panics rather than reading past them) and `frame` is valid and now empty.
        let r = unsafe { ffi::av_buffersink_get_frame(self.sinks[i], frame.as_mut_ptr()) };
        if r >= 0 {
            return Ok(true);
        }
        let e = ffmpeg::Error::from(r);
        if e == ffmpeg::Error::Eof || is_again(&e) {
            Ok(false)
        } else {
            Err(ff_err("running the filter graph", e))
        }
    }

    /// Time base of the frames sink `i` hands out.
    pub fn sink_time_base(&self, i: usize) -> Rational {
        // SAFETY: `self.sinks[i]` is one of the graph's live, configured buffer sinks.
        unsafe { ffi::av_buffersink_get_time_base(self.sinks[i]) }.into()
    }

    /// Make sink `i` hand out frames of exactly `frame_size` samples (the last one padded
    /// with silence), as an audio encoder with a fixed frame size needs.
    pub fn set_sink_frame_size(&mut self, i: usize, frame_size: u32) {
        // SAFETY: `self.sinks[i]` is one of the graph's live, configured audio buffer sinks (the
        // call needs the configured input link, which `build_graph` validated).
        unsafe { ffi::av_buffersink_set_frame_size(self.sinks[i], frame_size) };
    }
}

/// Build a graph: a buffer source named "in", buffersinks named `sink_names`, `spec` in between.
pub(crate) fn build_graph(
    src_filter: &str,
    src_args: &str,
    sink_filter: &str,
    sink_names: &[String],
    spec: &str,
) -> Result<Graph, MediaError> {
    let find = |name: &str| {
        filter::find(name)
            .ok_or_else(|| MediaError::Ffmpeg(format!("the {name} filter is not available")))
    };
    let mut graph = filter::Graph::new();
    let mut src_ctx = graph
        .add(&find(src_filter)?, "in", src_args)
        .map_err(|e| ff_err(&format!("creating the {src_filter} source ({src_args})"), e))?;
    // SAFETY: this only reads the context's pointer; it stays valid as long as `graph`, which
    // the returned `Graph` keeps.
    let src = unsafe { src_ctx.as_mut_ptr() };
    let sink_filter = find(sink_filter)?;
    let mut sinks = Vec::with_capacity(sink_names.len());
    for name in sink_names {
        let ctx =
            graph.add(&sink_filter, name, "").map_err(|e| ff_err("creating a buffer sink", e))?;
        // SAFETY: as for the source: only the pointer is read, and it lives as long as `graph`.
        sinks.push(unsafe { ctx.as_ptr() } as *mut ffi::AVFilterContext);
    }
    {
        let mut parser = graph.output("in", 0).map_err(|e| ff_err("wiring the filter graph", e))?;
        for name in sink_names {
            parser = parser.input(name, 0).map_err(|e| ff_err("wiring the filter graph", e))?;
        }
        parser.parse(spec).map_err(|e| ff_err(&format!("parsing the filter graph {spec:?}"), e))?;
    }
    graph.validate().map_err(|e| ff_err(&format!("configuring the filter graph {spec:?}"), e))?;
    Ok(Graph { _graph: graph, src, sinks })
}
