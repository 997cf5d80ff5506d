require ["body", "fileinto"];
if body :text :contains "découvrez nos offres" { fileinto "t-html-latin1"; }
if body :text :contains "color: red" { fileinto "t-style"; }
if body :text :contains "hidden comment" { fileinto "t-comment"; }
if body :text :contains "XHTML Hello" { fileinto "t-xhtml"; }
if body :text :contains "<p>" { fileinto "t-markup"; }
if body :text :contains "never closed" { fileinto "t-unclosed"; }
if body :content "text/html" :contains "<style>" { fileinto "c-html-raw"; }
if body :content "image/png" :contains "PNG" { fileinto "c-png-decoded"; }
if body :content "multipart/related" :contains "" { fileinto "c-related"; }
if body :content "application/xhtml+xml" :contains "<body>" { fileinto "c-xhtml"; }
if body :raw :contains "ZWN0dXJl" { fileinto "raw"; }
