require ["vacation-seconds"];
vacation :seconds 7200 :handle "short" :mime text:
Content-Type: text/plain; charset=utf-8

Back in two hours.
.
;
