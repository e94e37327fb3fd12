//! What may be printed of a URL. Every URL bosun prints — in logs, events, error messages,
//! metric labels and reports — may carry a credential: basic-auth passwords ride in its user
//! information, function platforms put their keys in its query (`?code=…`), and signed links
//! in its fragment. So a printed URL keeps its scheme, host, port, path and query keys, and
//! loses the rest: `https://REDACTED@hooks.example/sync?code=REDACTED#REDACTED`.

use url::Url;

/// What stands in for a redacted part.
pub const REDACTED: &str = "REDACTED";

/// `url` as it may be printed: user information, every query value (a query item without `=`
/// counts as a value) and the fragment replaced by [`REDACTED`].
pub fn url(url: &Url) -> Url {
    let mut redacted = url.clone();
    if !url.username().is_empty() || url.password().is_some() {
        // Only URLs that cannot have a host refuse these, and those have no user information.
        let _ = redacted.set_password(None);
        let _ = redacted.set_username(REDACTED);
    }
    if let Some(query) = url.query() {
        let items: Vec<String> = query
            .split('&')
            .map(|item| match item.split_once('=') {
                Some((key, _)) => format!("{key}={REDACTED}"),
                None if item.is_empty() => String::new(),
                None => REDACTED.to_owned(),
            })
            .collect();
        redacted.set_query(Some(&items.join("&")));
    }
    if url.fragment().is_some() {
        redacted.set_fragment(Some(REDACTED));
    }
    redacted
}

/// The text of a URL as it may be printed ([`url`]); text that does not parse as a URL is not
/// printed at all, since nothing in it could be told apart from a credential.
pub fn url_text(text: &str) -> String {
    match Url::parse(text) {
        Ok(parsed) => url(&parsed).to_string(),
        Err(_) => format!("<a URL that does not parse, {} characters>", text.chars().count()),
    }
}

/// A path as it may be printed, with its query and fragment redacted as [`url`] redacts them
/// (a hook declared by Service names its path apart from the URL).
pub fn path_text(path: &str) -> String {
    const BASE: &str = "http://service";
    let printed = url_text(&format!("{BASE}{path}"));
    printed.strip_prefix(BASE).map(str::to_owned).unwrap_or(printed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_part_that_may_hold_a_credential_is_redacted() {
        let cases = [
            (
                "http://user:pw@127.0.0.1:8182/sync?code=S1&token=S2#S3",
                "http://REDACTED@127.0.0.1:8182/sync?code=REDACTED&token=REDACTED#REDACTED",
            ),
            ("https://hooks.ops/sync", "https://hooks.ops/sync"),
            ("https://token@hooks.ops/sync?S1", "https://REDACTED@hooks.ops/sync?REDACTED"),
            ("http://h/p?a=&b=x%20y&&c", "http://h/p?a=REDACTED&b=REDACTED&&REDACTED"),
            ("http://h/p?", "http://h/p?"),
        ];
        for (given, printed) in cases {
            assert_eq!(url_text(given), printed, "{given}");
        }
        assert_eq!(url_text("http://user:S1@[bad/sync"), "<a URL that does not parse, 24 characters>");
        assert_eq!(path_text("/finalize?token=S2#S3"), "/finalize?token=REDACTED#REDACTED");
        assert_eq!(path_text("/sync"), "/sync");
    }

    proptest! {
        /// Whatever sits in the user information, the query values or the fragment never
        /// reaches the printed text.
        #[test]
        fn no_secret_survives(secret in "[A-Za-z0-9]{12,20}", key in "[a-z]{1,6}", path in "(/[a-z]{1,5}){0,3}") {
            for given in [
                format!("https://user:{secret}@hooks.ops{path}"),
                format!("https://{secret}@hooks.ops{path}"),
                format!("https://hooks.ops{path}?{key}={secret}"),
                format!("https://hooks.ops{path}?{key}=1&other={secret}&x"),
                format!("https://hooks.ops{path}?{secret}"),
                format!("https://hooks.ops{path}#{secret}"),
            ] {
                let printed = url_text(&given);
                prop_assert!(!printed.contains(&secret), "{} printed as {}", given, printed);
            }
        }
    }
}
