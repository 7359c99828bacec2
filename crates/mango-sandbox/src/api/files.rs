//! Recording files behind the links: a silent MP3 as long as the call, with byte ranges.

use super::*;

// ---- recording files -------------------------------------------------------------------------

/// A byte range from a `Range` header: `Ok(None)` to serve the whole file (no header, or one
/// this server ignores, as HTTP allows), `Err(())` when it cannot be satisfied.
pub(super) fn byte_range(headers: &HeaderMap, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(value) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        // Several ranges: a full answer is allowed and simpler.
        return Ok(None);
    }
    let Some((start, end)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let (start, end) = (start.trim(), end.trim());
    let parse = |s: &str| s.parse::<u64>().map_err(|_| ());
    let range = if start.is_empty() {
        // The last N bytes.
        let Ok(n) = parse(end) else { return Ok(None) };
        if n == 0 || len == 0 {
            return Err(());
        }
        (len.saturating_sub(n), len - 1)
    } else {
        let Ok(first) = parse(start) else {
            return Ok(None);
        };
        let last = if end.is_empty() {
            len.saturating_sub(1)
        } else {
            match parse(end) {
                Ok(last) if last >= first => last.min(len.saturating_sub(1)),
                _ => return Ok(None),
            }
        };
        if first >= len {
            return Err(());
        }
        (first, last)
    };
    Ok(Some(range))
}

pub(super) async fn file(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let now = Instant::now();
    let token = name.strip_suffix(".mp3").unwrap_or(&name);
    let link = {
        let m = state.lock();
        m.links
            .get(token)
            .filter(|l| l.expires > now)
            .map(|l| (l.recording_id.clone(), l.download, l.seconds))
    };
    let Some((recording_id, download, seconds)) = link else {
        let mut response = Response::new(Body::from("link unknown or expired\n"));
        *response.status_mut() = StatusCode::NOT_FOUND;
        return response;
    };
    let data = mp3::silent(seconds);
    let len = data.len() as u64;
    let range = match byte_range(&headers, len) {
        Ok(range) => range,
        Err(()) => {
            let mut response = empty(StatusCode::RANGE_NOT_SATISFIABLE);
            if let Ok(v) = header::HeaderValue::from_str(&format!("bytes */{len}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return response;
        }
    };
    state.lock().stats.files_served += 1;
    let (status, body, content_range) = match range {
        Some((first, last)) => {
            // Bounds were checked against `len` above.
            let slice = data
                .get(first as usize..=last as usize)
                .map(<[u8]>::to_vec)
                .unwrap_or_default();
            (
                StatusCode::PARTIAL_CONTENT,
                slice,
                Some(format!("bytes {first}-{last}/{len}")),
            )
        }
        None => (StatusCode::OK, data, None),
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("audio/mpeg"),
    );
    h.insert(
        header::ACCEPT_RANGES,
        header::HeaderValue::from_static("bytes"),
    );
    if let Some(v) = content_range.and_then(|r| header::HeaderValue::from_str(&r).ok()) {
        h.insert(header::CONTENT_RANGE, v);
    }
    if download {
        // Ids are base64, so they are safe in a quoted file name once `/` and `"` are replaced.
        let safe: String = recording_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '=' || c == '+' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if let Ok(v) =
            header::HeaderValue::from_str(&format!("attachment; filename=\"{safe}.mp3\""))
        {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(value: &str, len: u64) -> Result<Option<(u64, u64)>, ()> {
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, value.parse().unwrap());
        byte_range(&h, len)
    }

    #[test]
    fn ranges_follow_http() {
        assert_eq!(range("bytes=0-9", 100), Ok(Some((0, 9))));
        assert_eq!(range("bytes=90-", 100), Ok(Some((90, 99))));
        assert_eq!(range("bytes=-10", 100), Ok(Some((90, 99))));
        assert_eq!(range("bytes=-1000", 100), Ok(Some((0, 99))));
        assert_eq!(range("bytes=50-1000", 100), Ok(Some((50, 99))));
        assert_eq!(range("bytes=100-", 100), Err(()));
        assert_eq!(range("bytes=-0", 100), Err(()));
        // Ignored: another unit, several ranges, nonsense, a reversed range.
        assert_eq!(range("items=0-1", 100), Ok(None));
        assert_eq!(range("bytes=0-1,5-6", 100), Ok(None));
        assert_eq!(range("bytes=x-y", 100), Ok(None));
        assert_eq!(range("bytes=9-3", 100), Ok(None));
        assert_eq!(byte_range(&HeaderMap::new(), 100), Ok(None));
    }
}
