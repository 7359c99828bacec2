//! The UI's two languages and their catalogues.
//!
//! One catalogue per language, kept as plain key files under `crates/server/locales/<lang>/`
//! (one file per area of the UI, all merged into the language's catalogue): `key = text` lines,
//! `#` comments. Templates never hold words: they ask the catalogue, `{{ t.get("key") }}`. The
//! Russian texts of the settings window are the vendor's own words (Mango's help page), so an
//! owner who read it finds the same labels in the same places.

use rust_embed::RustEmbed;
use std::collections::HashMap;
use std::sync::OnceLock;

#[derive(RustEmbed)]
#[folder = "locales/"]
struct LocaleFiles;

/// A language of the UI (and of a tenant's texts in the CRM).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lang {
    En,
    Ru,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::En, Lang::Ru];

    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Ru => "ru",
        }
    }

    /// The language's own name, as its switch shows it.
    pub fn own_name(self) -> &'static str {
        match self {
            Lang::En => "English",
            Lang::Ru => "Русский",
        }
    }

    pub fn parse(code: &str) -> Option<Lang> {
        match code.trim().to_ascii_lowercase().as_str() {
            "en" => Some(Lang::En),
            "ru" => Some(Lang::Ru),
            _ => None,
        }
    }

    /// The first language of an `Accept-Language` header that the UI speaks, by the order of
    /// preference the browser gave (`q` weights).
    pub fn from_accept_language(header: &str) -> Option<Lang> {
        let mut ranked: Vec<(f32, usize, Lang)> = header
            .split(',')
            .enumerate()
            .filter_map(|(i, part)| {
                let mut pieces = part.split(';');
                let tag = pieces.next()?.trim();
                let primary = tag.split('-').next()?;
                let lang = Lang::parse(primary)?;
                let q = pieces
                    .find_map(|p| p.trim().strip_prefix("q="))
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .unwrap_or(1.0);
                (q > 0.0).then_some((q, i, lang))
            })
            .collect();
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        ranked.first().map(|r| r.2)
    }

    pub fn catalogue(self) -> &'static Catalogue {
        static CATALOGUES: OnceLock<HashMap<Lang, Catalogue>> = OnceLock::new();
        &CATALOGUES.get_or_init(|| {
            Lang::ALL
                .into_iter()
                .map(|lang| (lang, Catalogue::load(lang)))
                .collect()
        })[&self]
    }
}

/// One language's texts by key.
#[derive(Debug)]
pub struct Catalogue {
    lang: Lang,
    texts: HashMap<String, String>,
}

/// A line of a catalogue file that is not `key = text`, a comment or blank.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}, line {line}: {problem}")]
pub struct CatalogueError {
    pub file: String,
    pub line: usize,
    pub problem: String,
}

impl Catalogue {
    fn load(lang: Lang) -> Catalogue {
        let mut texts = HashMap::new();
        for (file, text) in Self::files(lang) {
            // The files are the build's own: a malformed one is caught by the catalogue tests,
            // so at run time its good lines are kept and the bad ones logged.
            match parse_file(&file, &text) {
                Ok(pairs) => texts.extend(pairs),
                Err(errors) => {
                    for e in errors {
                        tracing::error!(error = %e, "UI catalogue line skipped");
                    }
                    texts.extend(parse_lenient(&text));
                }
            }
        }
        Catalogue { lang, texts }
    }

    /// The catalogue files of a language, `(path, text)`, sorted by path.
    pub fn files(lang: Lang) -> Vec<(String, String)> {
        let prefix = format!("{}/", lang.code());
        let mut files: Vec<(String, String)> = LocaleFiles::iter()
            .filter(|p| p.starts_with(&prefix) && p.ends_with(".txt"))
            .filter_map(|p| {
                let file = LocaleFiles::get(&p)?;
                Some((
                    p.to_string(),
                    String::from_utf8_lossy(&file.data).into_owned(),
                ))
            })
            .collect();
        files.sort();
        files
    }

    pub fn lang(&self) -> Lang {
        self.lang
    }

    /// The text of `key`; a missing key shows as itself (the catalogue tests keep that from
    /// happening in a build).
    pub fn get<'a>(&'a self, key: &'a str) -> &'a str {
        self.texts.get(key).map(String::as_str).unwrap_or(key)
    }

    /// The text of `key` with each `{name}` replaced by its value.
    pub fn fmt(&self, key: &str, args: &[(&str, &str)]) -> String {
        let mut text = self.get(key).to_string();
        for (name, value) in args {
            text = text.replace(&format!("{{{name}}}"), value);
        }
        text
    }

    pub fn has(&self, key: &str) -> bool {
        self.texts.contains_key(key)
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.texts.keys().map(String::as_str)
    }
}

/// The `key = text` pairs of one catalogue file, or every line that is not one.
pub fn parse_file(file: &str, text: &str) -> Result<Vec<(String, String)>, Vec<CatalogueError>> {
    let mut pairs = Vec::new();
    let mut errors = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let error = |problem: String| CatalogueError {
            file: file.to_string(),
            line: i + 1,
            problem,
        };
        match trimmed.split_once('=') {
            Some((key, value)) if valid_key(key.trim()) && !value.trim().is_empty() => {
                let key = key.trim().to_string();
                if !seen.insert(key.clone()) {
                    errors.push(error(format!("key {key:?} given twice")));
                    continue;
                }
                pairs.push((key, value.trim().to_string()));
            }
            Some((key, _)) if !valid_key(key.trim()) => errors.push(error(format!(
                "key {:?} is not lowercase words joined by dots, dashes or underscores",
                key.trim()
            ))),
            Some(_) => errors.push(error("the text after '=' is empty".into())),
            None => errors.push(error("expected `key = text`".into())),
        }
    }
    if errors.is_empty() {
        Ok(pairs)
    } else {
        Err(errors)
    }
}

fn parse_lenient(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.trim().split_once('='))
        .filter(|(k, v)| valid_key(k.trim()) && !v.trim().is_empty())
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn every_catalogue_file_parses() {
        for lang in Lang::ALL {
            let files = Catalogue::files(lang);
            assert!(!files.is_empty(), "no catalogue files for {lang:?}");
            for (file, text) in files {
                if let Err(errors) = parse_file(&file, &text) {
                    panic!(
                        "{}",
                        errors
                            .iter()
                            .map(|e| e.to_string())
                            .collect::<Vec<_>>()
                            .join("\n")
                    );
                }
            }
        }
    }

    #[test]
    fn both_languages_have_the_same_keys() {
        let en: BTreeSet<&str> = Lang::En.catalogue().keys().collect();
        let ru: BTreeSet<&str> = Lang::Ru.catalogue().keys().collect();
        let only_en: Vec<_> = en.difference(&ru).collect();
        let only_ru: Vec<_> = ru.difference(&en).collect();
        assert!(
            only_en.is_empty() && only_ru.is_empty(),
            "keys only in English: {only_en:?}; only in Russian: {only_ru:?}"
        );
    }

    /// Every `t.get("…")` / `t.fmt("…"` / `tr("…")` in the templates and the UI's Rust code
    /// names a key the catalogues have.
    #[test]
    fn every_key_the_ui_asks_for_exists() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut missing = Vec::new();
        let mut sources = Vec::new();
        collect_files(&root.join("templates"), &mut sources);
        collect_files(&root.join("src/ui"), &mut sources);
        assert!(!sources.is_empty());
        for path in sources {
            let text = std::fs::read_to_string(&path).unwrap();
            for key in asked_keys(&text) {
                for lang in Lang::ALL {
                    if !lang.catalogue().has(&key) {
                        missing.push(format!(
                            "{} asks {key:?}, missing in {}",
                            path.display(),
                            lang.code()
                        ));
                    }
                }
            }
        }
        assert!(missing.is_empty(), "{}", missing.join("\n"));
    }

    fn collect_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                collect_files(&p, out);
            } else if p.extension().is_some_and(|x| x == "html" || x == "rs") {
                out.push(p);
            }
        }
    }

    fn asked_keys(text: &str) -> Vec<String> {
        let mut keys = Vec::new();
        for marker in ["t.get(\"", "t.fmt(\"", "tr(\""] {
            let mut rest = text;
            while let Some(at) = rest.find(marker) {
                rest = &rest[at + marker.len()..];
                if let Some(end) = rest.find('"') {
                    let key = &rest[..end];
                    if valid_key(key) && key.contains('.') {
                        keys.push(key.to_string());
                    }
                }
            }
        }
        keys
    }

    #[test]
    fn a_malformed_line_is_named() {
        let errors = parse_file(
            "en/x.txt",
            "a.b = ok\nnot a pair\nA = upper\nc.d =\na.b = again\n",
        )
        .unwrap_err();
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            text,
            vec![
                "en/x.txt, line 2: expected `key = text`",
                "en/x.txt, line 3: key \"A\" is not lowercase words joined by dots, dashes or underscores",
                "en/x.txt, line 4: the text after '=' is empty",
                "en/x.txt, line 5: key \"a.b\" given twice",
            ]
        );
    }

    #[test]
    fn accept_language_picks_the_preferred_spoken_language() {
        assert_eq!(
            Lang::from_accept_language("ru-RU,ru;q=0.9,en;q=0.8"),
            Some(Lang::Ru)
        );
        assert_eq!(
            Lang::from_accept_language("de-DE, en;q=0.5, ru;q=0.7"),
            Some(Lang::Ru)
        );
        assert_eq!(Lang::from_accept_language("en-US,en;q=0.9"), Some(Lang::En));
        assert_eq!(Lang::from_accept_language("de, fr"), None);
        assert_eq!(Lang::from_accept_language("ru;q=0, en"), Some(Lang::En));
        assert_eq!(Lang::from_accept_language(""), None);
    }

    #[test]
    fn fmt_fills_named_places() {
        let t = Lang::En.catalogue();
        assert_eq!(t.fmt("missing.key {n}", &[("n", "3")]), "missing.key 3");
    }
}
