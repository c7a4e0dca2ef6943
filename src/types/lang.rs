//! Caption languages: BCP 47 tags (`ko`, `en`, `pt-BR`, `zh-Hant-TW`) whose language is a
//! known ISO 639 code, in their canonical case, with a name to show when none is given.

/// ISO 639-1 codes (every two-letter language).
const ISO_639_1: &str = "aa ab ae af ak am an ar as av ay az ba be bg bh bi bm bn bo br bs ca ce ch co cr cs cu cv cy \
da de dv dz ee el en eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi ho hr ht hu hy hz ia id ie ig ii \
ik io is it iu ja jv ka kg ki kj kk kl km kn ko kr ks ku kv kw ky la lb lg li ln lo lt lu lv mg mh mi mk ml mn mr \
ms mt my na nb nd ne ng nl nn no nr nv ny oc oj om or os pa pi pl ps pt qu rm rn ro ru rw sa sc sd se sg si sk sl \
sm sn so sq sr ss st su sv sw ta te tg th ti tk tl tn to tr ts tt tw ty ug uk ur uz ve vi vo wa wo xh yi yo za zh zu";

/// Three-letter ISO 639-2/3 codes with no two-letter code that lectures are given in.
const ISO_639_3: &str =
    "ace ast bal ban bho ceb cmn fil gsw haw hmn hsb ilo jbo kab kok lad lij lmo mai mni nan nap \
nds pam sat scn sco shn szl tet tlh tpi wuu yue zza";

/// Names of the languages most lectures are captioned in, in their own language.
const NAMES: &[(&str, &str)] = &[
    ("ko", "한국어"),
    ("en", "English"),
    ("ja", "日本語"),
    ("zh", "中文"),
    ("zh-Hans", "简体中文"),
    ("zh-Hant", "繁體中文"),
    ("es", "Español"),
    ("fr", "Français"),
    ("de", "Deutsch"),
    ("pt", "Português"),
    ("pt-BR", "Português (Brasil)"),
    ("vi", "Tiếng Việt"),
    ("th", "ไทย"),
    ("id", "Bahasa Indonesia"),
    ("ru", "Русский"),
];

/// `tag` in canonical case if it is a well-formed BCP 47 tag (language, then optional script,
/// region and variants) whose language is known; why not otherwise.
pub fn canonical(tag: &str) -> Result<String, String> {
    let refuse =
        |why: &str| Err(format!("`{tag}` is not a language tag such as ko, en or pt-BR: {why}"));
    if tag.is_empty() || tag.len() > 35 {
        return refuse("it must be 1 to 35 characters");
    }
    let mut parts = tag.split('-');
    let language = parts.next().unwrap_or("").to_ascii_lowercase();
    let known = match language.len() {
        2 => ISO_639_1.split(' ').any(|c| c == language),
        3 => ISO_639_3.split(' ').any(|c| c == language),
        _ => false,
    };
    if !language.bytes().all(|b| b.is_ascii_lowercase()) || !known {
        return refuse("its language is not a known ISO 639 code");
    }
    let mut out = language;
    let mut stage = 0; // 0: script next, 1: region next, 2: variants
    for part in parts {
        let alpha = part.bytes().all(|b| b.is_ascii_alphabetic());
        let digits = part.bytes().all(|b| b.is_ascii_digit());
        out.push('-');
        if stage == 0 && part.len() == 4 && alpha {
            let mut s = part.to_ascii_lowercase();
            s[..1].make_ascii_uppercase();
            out.push_str(&s);
            stage = 1;
        } else if stage <= 1 && ((part.len() == 2 && alpha) || (part.len() == 3 && digits)) {
            out.push_str(&part.to_ascii_uppercase());
            stage = 2;
        } else if (5..=8).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_alphanumeric())
            || (part.len() == 4
                && part.as_bytes()[0].is_ascii_digit()
                && part.bytes().all(|b| b.is_ascii_alphanumeric()))
        {
            out.push_str(&part.to_ascii_lowercase());
            stage = 2;
        } else {
            return refuse(&format!("`{part}` is not a script, region or variant subtag"));
        }
    }
    Ok(out)
}

/// The name to show for `tag` (canonical) when the uploader gave none.
pub fn name(tag: &str) -> String {
    let primary = |t: &str| NAMES.iter().find(|(k, _)| *k == t).map(|(_, n)| n.to_string());
    primary(tag)
        .or_else(|| tag.rsplit_once('-').and_then(|(head, _)| primary(head)))
        .or_else(|| primary(tag.split('-').next().unwrap_or(tag)))
        .unwrap_or_else(|| tag.to_string())
}

/// Whether a caption in `tag` is in `language` (a course's): the same primary language.
pub fn same_language(tag: &str, language: &str) -> bool {
    let primary = |t: &str| t.split('-').next().unwrap_or("").to_ascii_lowercase();
    primary(tag) == primary(language)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_checked_and_put_in_canonical_case() {
        for (given, want) in [
            ("ko", "ko"),
            ("EN", "en"),
            ("pt-br", "pt-BR"),
            ("zh-hant-tw", "zh-Hant-TW"),
            ("es-419", "es-419"),
            ("yue", "yue"),
            ("de-CH-1996", "de-CH-1996"),
        ] {
            assert_eq!(canonical(given).as_deref(), Ok(want), "{given}");
        }
        for bad in [
            "",
            "xx",
            "klingon",
            "en_US",
            "en-",
            "ko-KR-",
            "en-US-x",
            "123",
            "e",
            "qq-KR",
            "en-Latn-Latn",
        ] {
            assert!(canonical(bad).is_err(), "{bad}");
        }
        assert_eq!(name("ko"), "한국어");
        assert_eq!(name("pt-BR"), "Português (Brasil)");
        assert_eq!(name("en-GB"), "English");
        assert_eq!(name("zh-Hant-TW"), "繁體中文");
        assert_eq!(name("sw"), "sw");
        assert!(same_language("ko-KR", "ko") && !same_language("en", "ko"));
    }
}
