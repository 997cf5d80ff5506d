require ["vacation"];
vacation :days 3 :subject "Out of office" :from "Bob <bob@example.org>" :addresses ["bob@example.org", "robert@example.org"] "I am away until Monday.";
