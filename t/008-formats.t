# smart-imaging: every format and every fallback through a real nginx
# (docs/responses.md, "What it does", smart_imaging_formats, "Caches and
# User-Agent", smart_imaging_avif_max_pixels / _avif_quality / _guard;
# the UA / Accept table is core/src/negotiate.rs): AVIF to Chrome, Firefox
# and Safari 17, WebP to image/webp, JPEG 2000 to Safari 13 and iOS 13 (by
# User-Agent), JPEG XR to IE 11 and legacy Edge (by Accept or User-Agent),
# the original byte for byte to curl, to Safari without AVIF in Accept and
# to crawlers.  A format granted by User-Agent gets "Vary: Accept,
# User-Agent" and "Cache-Control: private" (other directives kept, public
# dropped); everything else "Vary: Accept" and no Cache-Control.  Formats
# fall through AVIF -> WebP -> JP2/JXR -> original: AVIF over
# smart_imaging_avif_max_pixels, AVIF not enabled, AVIF that cannot pass
# the guard, image/avif;q=0; the original (reason=guard) when nothing
# passes.
#
# Bodies: each served format's signature, decoded by the Debian reference
# decoder (avifdec, dwebp, opj_decompress, JxrDecApp: "--- decode:", see
# SmartImaging::decode_body_check; skipped when a program is missing) to
# the original's dimensions.  Content-Length must be present (and the
# harness fails any body that does not match it: requests are sent with
# "Connection: close", so a short or long body is seen).  Needs the module:
#
#   TEST_NGINX_BINARY=/path/to/nginx \
#   TEST_NGINX_LOAD_MODULES=target/debug/libngx_http_smart_imaging_module.so \
#       prove -I t/lib t/008-formats.t

use Test::Nginx::Socket;
# t/lib after Test::Nginx::Socket: prove -I t/lib gives ours, -I REAL/lib the
# real one.
use FindBin ();
use lib "$FindBin::Bin/lib";
use SmartImaging ();

# The real Test::Nginx does not set it (lua-nginx-module's t/*.t do this too).
$ENV{TEST_NGINX_HTML_DIR} ||= html_dir();

my %Samples = SmartImaging::default_samples();   # sample.jpg: 512x512
our $Jpeg = SmartImaging::require_samples(\%Samples)->{'sample.jpg'};
our $JpegLen = length $Jpeg;
# A small PNG: a 160x120 gradient (every format makes it far smaller).
our $Png = SmartImaging::gradient_png(160, 120);
our $PngLen = length $Png;

our @Files = (
    ['sample.jpg', $Jpeg],
    ['photo.png',  $Png],
);

# Image-request Accept values and User-Agents, as the browsers send them
# (the same strings as the table in core/src/negotiate.rs).
our $ChromeAccept   = 'image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8';
our $Firefox92Accept  = 'image/avif,image/webp,*/*';
our $Firefox128Accept = 'image/avif,image/webp,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5';
our $Firefox65Accept  = 'image/webp,*/*';
# Safari 11.1-15 before Big Sur, iOS 11.3-13: no WebP.
our $OldSafariAccept = 'image/png,image/svg+xml,image/*;q=0.8,video/*;q=0.8,*/*;q=0.5';
our $Safari17Accept  = 'image/webp,image/avif,image/jxl,image/heic,image/heic-sequence,video/*;q=0.8,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5';
# The image URL opened directly (Safari up to 15, and 16+ likewise lists
# no image type).
our $NavigationAccept = 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8';
# IE 9, 10, IE 11 on Windows 7 (no JPEG XR listed) ...
our $IeAccept    = 'image/png, image/svg+xml, image/*;q=0.8, */*;q=0.5';
# ... IE 11 on Windows 8.1/10 and legacy Edge (JPEG XR listed).
our $IeJxrAccept = 'image/png, image/svg+xml, image/jxr, image/*;q=0.8, */*;q=0.5';

our $ChromeUA   = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36';
our $FirefoxUA  = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0';
our $Firefox65UA = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:65.0) Gecko/20100101 Firefox/65.0';
our $Safari13UA = 'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.1.2 Safari/605.1.15';
our $Ios13UA    = 'Mozilla/5.0 (iPhone; CPU iPhone OS 13_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.1.2 Mobile/15E148 Safari/604.1';
our $Safari17UA = 'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2.1 Safari/605.1.15';
our $Ie11UA     = 'Mozilla/5.0 (Windows NT 6.1; WOW64; Trident/7.0; rv:11.0) like Gecko';
our $Ie11Win10UA = 'Mozilla/5.0 (Windows NT 10.0; WOW64; Trident/7.0; rv:11.0) like Gecko';
our $Edge17UA   = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/64.0.3282.140 Safari/537.36 Edge/17.17134';
our $CurlUA     = 'curl/8.5.0';
# Applebot sends a Safari 13 User-Agent: crawlers get nothing by UA.
our $ApplebotUA = 'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.1.1 Safari/605.1.15 (Applebot/0.1; +http://www.apple.com/go/applebot)';
our $GooglebotUA = 'Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)';

# "Accept: ...\nUser-Agent: ...\n" for --- more_headers eval.
sub client { "Accept: $_[0]\nUser-Agent: $_[1]\n" }

# What every converted response's X-Smart-Imaging starts with.
sub converted {
    my ($format, $in) = @_;
    return "X-Smart-Imaging: ^converted format=$format in=$in out=\\d+"
         . " saved=[\\d.]+% quality=\\d+ score=(?:8\\d|9\\d|100)\\.\\d"
         . " encodes=\\d+ time=\\d+ms\$\n";
}

# html/ under several locations, X-Smart-Imaging everywhere.
our $Config = <<'_EOC_';
    smart_imaging_debug_header on;
    location /img/      { alias $TEST_NGINX_HTML_DIR/; smart_imaging on; }
    location /avifpx/   { alias $TEST_NGINX_HTML_DIR/; smart_imaging on;
                          smart_imaging_avif_max_pixels 100000; }
    location /webponly/ { alias $TEST_NGINX_HTML_DIR/; smart_imaging on;
                          smart_imaging_formats webp; }
    location /modern/   { alias $TEST_NGINX_HTML_DIR/; smart_imaging on;
                          smart_imaging_formats avif webp; }
    location /avifq10/  { alias $TEST_NGINX_HTML_DIR/; smart_imaging on;
                          smart_imaging_avif_quality 10; }
    location /strict/   { alias $TEST_NGINX_HTML_DIR/; smart_imaging on;
                          smart_imaging_guard 99.9; }
    location /cached/   { alias $TEST_NGINX_HTML_DIR/; smart_imaging on;
                          add_header Cache-Control "public, max-age=600"; }
_EOC_

repeat_each(1);
no_long_string();

# A conversion with the guard takes up to ~0.6 s here (AVIF's search);
# leave room for a loaded machine before the response's first byte.
SmartImaging::add_block_defaults(http_config => SmartImaging::types_config(),
                                 config      => $Config,
                                 user_files  => \@Files,
                                 timeout     => '10');
SmartImaging::add_decode_check(\%Samples);

plan 'no_plan';

run_tests();

__DATA__

=== TEST 1: Chrome: AVIF, Vary: Accept, nothing private
--- more_headers eval
main::client($::ChromeAccept, $::ChromeUA)
--- request
GET /img/sample.jpg
--- response_headers_like eval
SmartImaging::headers_like(
"Content-Type: image/avif\nVary: Accept\n!Cache-Control\n!Transfer-Encoding\n",
main::converted('avif', $::JpegLen) . "Content-Length: ^[1-9][0-9]*\$\n"
. "ETag: ^W/\"[0-9a-f]+-[0-9a-f]+-avif\\+webp-q90-src\"\$\n")
--- decode: avif sample.jpg
--- no_error_log
[error]
[warn]



=== TEST 2: Firefox 92-127 and Firefox 128+: AVIF
--- more_headers eval
[main::client($::Firefox92Accept, $::FirefoxUA),
 main::client($::Firefox128Accept, $::FirefoxUA)]
--- request eval
["GET /img/sample.jpg", "GET /img/sample.jpg"]
--- response_headers_like eval
SmartImaging::headers_like(
["Content-Type: image/avif\nVary: Accept\n!Cache-Control\n!Transfer-Encoding\n",
 "Content-Type: image/avif\nVary: Accept\n!Cache-Control\n!Transfer-Encoding\n"],
[main::converted('avif', $::JpegLen) . "Content-Length: ^[1-9][0-9]*\$\n",
 main::converted('avif', $::JpegLen) . "Content-Length: ^[1-9][0-9]*\$\n"])
--- decode eval
["avif sample.jpg", "avif sample.jpg"]
--- no_error_log
[error]
[warn]



=== TEST 3: Safari 17 (its own Accept lists image/avif): AVIF, not JPEG 2000, nothing by User-Agent
--- more_headers eval
main::client($::Safari17Accept, $::Safari17UA)
--- request
GET /img/sample.jpg
--- response_headers_like eval
SmartImaging::headers_like(
"Content-Type: image/avif\nVary: Accept\n!Cache-Control\n",
main::converted('avif', $::JpegLen) . "Content-Length: ^[1-9][0-9]*\$\n")
--- decode: avif sample.jpg
--- no_error_log
[error]
[warn]



=== TEST 4: Firefox 65-91 (image/webp,*/*): WebP
--- more_headers eval
main::client($::Firefox65Accept, $::Firefox65UA)
--- request
GET /img/sample.jpg
--- response_headers_like eval
SmartImaging::headers_like(
"Content-Type: image/webp\nVary: Accept\n!Cache-Control\n!Transfer-Encoding\n",
main::converted('webp', $::JpegLen) . "Content-Length: ^[1-9][0-9]*\$\n"
. "ETag: ^W/\"[0-9a-f]+-[0-9a-f]+-webp-q100-src\"\$\n")
--- decode: webp sample.jpg
--- no_error_log
[error]
[warn]



=== TEST 5: Safari 13 on macOS: JPEG 2000 by User-Agent: Vary: Accept, User-Agent and Cache-Control: private
--- more_headers eval
main::client($::OldSafariAccept, $::Safari13UA)
--- request
GET /img/sample.jpg
--- response_headers_like eval
SmartImaging::headers_like(
"Content-Type: image/jp2\nVary: Accept, User-Agent\nCache-Control: private\n!Transfer-Encoding\n",
main::converted('jp2', $::JpegLen) . "Content-Length: ^[1-9][0-9]*\$\n"
. "ETag: ^W/\"[0-9a-f]+-[0-9a-f]+-jp2-q100-src\"\$\n")
--- decode: jp2 sample.jpg
--- no_error_log
[error]
[warn]



=== TEST 6: iOS 13 Safari: JPEG 2000 by User-Agent, private
--- more_headers eval
main::client($::OldSafariAccept, $::Ios13UA)
--- request
GET /img/sample.jpg
--- response_headers_like eval
SmartImaging::headers_like(
"Content-Type: image/jp2\nVary: Accept, User-Agent\nCache-Control: private\n!Transfer-Encoding\n",
main::converted('jp2', $::JpegLen) . "Content-Length: ^[1-9][0-9]*\$\n")
--- decode: jp2 sample.jpg
--- no_error_log
[error]
[warn]



=== TEST 7: IE 11 on Windows 7 (no image/jxr in Accept): JPEG XR by User-Agent, private
--- more_headers eval
main::client($::IeAccept, $::Ie11UA)
--- request
GET /img/sample.jpg
--- response_headers_like eval
SmartImaging::headers_like(
"Content-Type: image/jxr\nVary: Accept, User-Agent\nCache-Control: private\n!Transfer-Encoding\n",
main::converted('jxr', $::JpegLen) . "Content-Length: ^[1-9][0-9]*\$\n"
. "ETag: ^W/\"[0-9a-f]+-[0-9a-f]+-jxr-q100-src\"\$\n")
--- decode: jxr sample.jpg
--- no_error_log
[error]
[warn]



=== TEST 8: legacy Edge 17 and IE 11 on Windows 10 list image/jxr: JPEG XR by Accept (Vary: Accept, nothing private); Edge 17 without it: by User-Agent
--- more_headers eval
[main::client($::IeJxrAccept, $::Edge17UA),
 main::client($::IeJxrAccept, $::Ie11Win10UA),
 main::client($::IeAccept, $::Edge17UA)]
--- request eval
["GET /img/sample.jpg", "GET /img/sample.jpg", "GET /img/sample.jpg"]
--- response_headers_like eval
SmartImaging::headers_like(
["Content-Type: image/jxr\nVary: Accept\n!Cache-Control\n",
 "Content-Type: image/jxr\nVary: Accept\n!Cache-Control\n",
 "Content-Type: image/jxr\nVary: Accept, User-Agent\nCache-Control: private\n"],
[main::converted('jxr', $::JpegLen) . "Content-Length: ^[1-9][0-9]*\$\n",
 main::converted('jxr', $::JpegLen) . "Content-Length: ^[1-9][0-9]*\$\n",
 main::converted('jxr', $::JpegLen) . "Content-Length: ^[1-9][0-9]*\$\n"])
--- decode eval
["jxr sample.jpg", "jxr sample.jpg", "jxr sample.jpg"]
--- no_error_log
[error]
[warn]



=== TEST 9: a PNG in every format: AVIF (Chrome), WebP (Firefox 65), JPEG 2000 (Safari 13), JPEG XR (IE 11)
--- more_headers eval
[main::client($::ChromeAccept, $::ChromeUA),
 main::client($::Firefox65Accept, $::Firefox65UA),
 main::client($::OldSafariAccept, $::Safari13UA),
 main::client($::IeAccept, $::Ie11UA)]
--- request eval
[("GET /img/photo.png") x 4]
--- response_headers_like eval
SmartImaging::headers_like(
["Content-Type: image/avif\nVary: Accept\n!Cache-Control\n",
 "Content-Type: image/webp\nVary: Accept\n!Cache-Control\n",
 "Content-Type: image/jp2\nVary: Accept, User-Agent\nCache-Control: private\n",
 "Content-Type: image/jxr\nVary: Accept, User-Agent\nCache-Control: private\n"],
[map { main::converted($_, $::PngLen) . "Content-Length: ^[1-9][0-9]*\$\n" }
     qw(avif webp jp2 jxr)])
--- decode eval
["avif 160x120", "webp 160x120", "jp2 160x120", "jxr 160x120"]
--- no_error_log
[error]
[warn]



=== TEST 10: the original, byte for byte: curl (*/*), Safari 17 opening the URL (no image type in Accept), Applebot (a Safari 13 UA), Googlebot
--- more_headers eval
[main::client('*/*', $::CurlUA),
 main::client($::NavigationAccept, $::Safari17UA),
 main::client($::OldSafariAccept, $::ApplebotUA),
 main::client('*/*', $::GooglebotUA)]
--- request eval
[("GET /img/sample.jpg") x 4]
--- response_headers eval
[("Content-Type: image/jpeg\nVary: Accept\n!Cache-Control\n"
  . "Content-Length: $::JpegLen\n"
  . "X-Smart-Imaging: original reason=nothing-to-do in=$::JpegLen\n") x 4]
--- response_body eval
[($::Jpeg) x 4]
--- no_error_log
[error]
[warn]



=== TEST 11: Cache-Control: private keeps the other directives and drops public (UA-decided JP2); an AVIF keeps the header as it is
--- more_headers eval
[main::client($::OldSafariAccept, $::Safari13UA),
 main::client($::ChromeAccept, $::ChromeUA)]
--- request eval
["GET /cached/sample.jpg", "GET /cached/sample.jpg"]
--- response_headers eval
["Content-Type: image/jp2\nVary: Accept, User-Agent\nCache-Control: private, max-age=600\n",
 "Content-Type: image/avif\nVary: Accept\nCache-Control: public, max-age=600\n"]
--- decode eval
["jp2 sample.jpg", "avif sample.jpg"]
--- no_error_log
[error]
[warn]



=== TEST 12: smart_imaging_avif_max_pixels 100000 (the JPEG has 262144): WebP for Chrome; the 160x120 PNG is still AVIF
--- more_headers eval
[main::client($::ChromeAccept, $::ChromeUA),
 main::client($::ChromeAccept, $::ChromeUA)]
--- request eval
["GET /avifpx/sample.jpg", "GET /avifpx/photo.png"]
--- response_headers_like eval
SmartImaging::headers_like(
["Content-Type: image/webp\nVary: Accept\n!Cache-Control\n",
 "Content-Type: image/avif\nVary: Accept\n!Cache-Control\n"],
[main::converted('webp', $::JpegLen) . "Content-Length: ^[1-9][0-9]*\$\n",
 main::converted('avif', $::PngLen) . "Content-Length: ^[1-9][0-9]*\$\n"])
--- decode eval
["webp sample.jpg", "avif 160x120"]
--- no_error_log
[error]
[warn]



=== TEST 13: smart_imaging_formats webp: WebP for Chrome (the variant names WebP alone); Safari 13 and IE 11 get the original, nothing private
--- more_headers eval
[main::client($::ChromeAccept, $::ChromeUA),
 main::client($::OldSafariAccept, $::Safari13UA),
 main::client($::IeAccept, $::Ie11UA)]
--- request eval
[("GET /webponly/sample.jpg") x 3]
--- response_headers_like eval
SmartImaging::headers_like(
["Content-Type: image/webp\nVary: Accept\n!Cache-Control\n",
 "Content-Type: image/jpeg\nVary: Accept\n!Cache-Control\nContent-Length: $::JpegLen\n",
 "Content-Type: image/jpeg\nVary: Accept\n!Cache-Control\nContent-Length: $::JpegLen\n"],
[main::converted('webp', $::JpegLen)
 . "ETag: ^W/\"[0-9a-f]+-[0-9a-f]+-webp-q100-src\"\$\n",
 "X-Smart-Imaging: ^original reason=nothing-to-do in=$::JpegLen\$\n",
 "X-Smart-Imaging: ^original reason=nothing-to-do in=$::JpegLen\$\n"])
--- response_body eval
# One per response (Test::Nginx compares an undef too): the converted body
# is checked by "--- decode".
[qr/\ARIFF/, $::Jpeg, $::Jpeg]
--- decode eval
["webp sample.jpg", undef, undef]
--- no_error_log
[error]
[warn]



=== TEST 14: smart_imaging_formats avif webp: Safari 13 and IE 11 get the original byte for byte, nothing private; Chrome still AVIF
--- more_headers eval
[main::client($::OldSafariAccept, $::Safari13UA),
 main::client($::IeAccept, $::Ie11UA),
 main::client($::ChromeAccept, $::ChromeUA)]
--- request eval
[("GET /modern/sample.jpg") x 3]
--- response_headers eval
["Content-Type: image/jpeg\nVary: Accept\n!Cache-Control\nContent-Length: $::JpegLen\n"
 . "X-Smart-Imaging: original reason=nothing-to-do in=$::JpegLen\n",
 "Content-Type: image/jpeg\nVary: Accept\n!Cache-Control\nContent-Length: $::JpegLen\n"
 . "X-Smart-Imaging: original reason=nothing-to-do in=$::JpegLen\n",
 "Content-Type: image/avif\nVary: Accept\n!Cache-Control\n"]
--- response_body eval
# One per response (Test::Nginx compares an undef too): the converted body
# is checked by "--- decode".
[$::Jpeg, $::Jpeg, qr/\A\0\0\0.ftypavif/s]
--- decode eval
[undef, undef, "avif sample.jpg"]
--- no_error_log
[error]
[warn]



=== TEST 15: smart_imaging_avif_quality 10: no AVIF passes the guard, WebP is served
--- more_headers eval
main::client($::ChromeAccept, $::ChromeUA)
--- request
GET /avifq10/sample.jpg
--- response_headers_like eval
SmartImaging::headers_like(
"Content-Type: image/webp\nVary: Accept\n!Cache-Control\n",
main::converted('webp', $::JpegLen) . "Content-Length: ^[1-9][0-9]*\$\n")
--- decode: webp sample.jpg
--- no_error_log
[error]
[warn]



=== TEST 16: smart_imaging_guard 99.9 on a JPEG: neither AVIF nor WebP passes, the original byte for byte with reason=guard
--- log_level: info
--- more_headers eval
main::client($::ChromeAccept, $::ChromeUA)
--- request
GET /strict/sample.jpg
--- response_headers_like eval
SmartImaging::headers_like(
"Content-Type: image/jpeg\nVary: Accept\n!Cache-Control\nContent-Length: $::JpegLen\n",
"X-Smart-Imaging: ^original reason=guard in=$::JpegLen score=\\d+\\.\\d time=\\d+ms\$\n" .
'ETag: ^"[0-9a-f]+-[0-9a-f]+"$')
--- response_body eval
$::Jpeg
--- error_log
no encoding passed the visual-quality guard
--- no_error_log
[error]
[warn]



=== TEST 17: smart_imaging_guard 99.9 for Safari 13: the original with reason=guard, still private (Vary and Cache-Control are decided from the request, before the conversion, as for its 304)
--- log_level: info
--- more_headers eval
main::client($::OldSafariAccept, $::Safari13UA)
--- request
GET /strict/sample.jpg
--- response_headers_like eval
SmartImaging::headers_like(
"Content-Type: image/jpeg\nVary: Accept, User-Agent\nCache-Control: private\nContent-Length: $::JpegLen\n",
"X-Smart-Imaging: ^original reason=guard in=$::JpegLen score=\\d+\\.\\d time=\\d+ms\$\n")
--- response_body eval
$::Jpeg
--- no_error_log
[error]
[warn]



=== TEST 18: image/avif;q=0 in Chrome's Accept: WebP
--- more_headers eval
main::client('image/avif;q=0,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8', $::ChromeUA)
--- request
GET /img/sample.jpg
--- response_headers_like eval
SmartImaging::headers_like(
"Content-Type: image/webp\nVary: Accept\n!Cache-Control\n",
main::converted('webp', $::JpegLen) . "Content-Length: ^[1-9][0-9]*\$\n"
. "ETag: ^W/\"[0-9a-f]+-[0-9a-f]+-webp-q100-src\"\$\n")
--- decode: webp sample.jpg
--- no_error_log
[error]
[warn]
