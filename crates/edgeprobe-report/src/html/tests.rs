use super::*;

#[test]
fn escaping_neutralises_markup_and_controls() {
    assert_eq!(
        escape_html("<script>alert('x')</script> & \"q\"\u{0}"),
        "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;\u{FFFD}"
    );
}
