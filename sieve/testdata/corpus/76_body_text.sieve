require ["body", "fileinto"];
if body :text :contains "rapport du trimestre" { fileinto "t-rapport"; }
if body :text :contains "<b>" { fileinto "t-markup"; }
if body :text :contains "%PDF" { fileinto "t-pdf"; }
if body :text :contains "zeppelin" { fileinto "t-zeppelin"; }
if body :text :contains "Click here" { fileinto "t-click"; }
