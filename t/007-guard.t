# smart-imaging: the visual-quality guard (docs/quality.md, "Quality: the
# visual-quality guard and qlt", smart_imaging_guard): what is converted
# passed SSIMULACRA 2 >= 80 (X-Smart-Imaging says so); a threshold nothing
# lossy passes keeps a JPEG original (reason=guard, an info line, not a
# warning) and gives a PNG as lossless WebP;
# qlt in the URL is the search's ceiling with the guard on and the quality
# used with it off; a poor network lowers the bar to 65.  (Scores computed
# outside the module: tests/guard.rs.)  Needs the module:
#
#   TEST_NGINX_BINARY=/path/to/nginx \
#   TEST_NGINX_LOAD_MODULES=target/debug/libngx_http_smart_imaging_module.so \
#       prove -I t/lib t/007-guard.t

use Test::Nginx::Socket;
# t/lib after Test::Nginx::Socket: prove -I t/lib gives ours, -I REAL/lib the
# real one.
use FindBin ();
use lib "$FindBin::Bin/lib";
use SmartImaging ();

# The real Test::Nginx does not set it (lua-nginx-module's t/*.t do this too).
$ENV{TEST_NGINX_HTML_DIR} ||= html_dir();

my %Samples = (
    'coffee.jpg' => 'sk_coffee.jpg',        # 600x400 photo
);
my $S = SmartImaging::require_samples(\%Samples);

our $Coffee    = $S->{'coffee.jpg'};
our $CoffeeLen = length $Coffee;
our $Photo     = SmartImaging::gradient_png(128, 96);

our @Files = (
    ['coffee.jpg', $Coffee],
    ['photo.png',  $Photo],
);

# A score of at least 80 (one decimal), as X-Smart-Imaging prints it.
our $Pass80 = qr/(?:8\d|9\d|100)\.\d/;

# html/ under several locations, X-Smart-Imaging everywhere.
our $Config = <<'_EOC_';
    smart_imaging_debug_header on;
    location /img/     { alias $TEST_NGINX_HTML_DIR/; smart_imaging on; }
    location /noguard/ { alias $TEST_NGINX_HTML_DIR/; smart_imaging on;
                         smart_imaging_guard off; }
    location /strict/  { alias $TEST_NGINX_HTML_DIR/; smart_imaging on;
                         smart_imaging_guard 99.9; }
    location /net/     { alias $TEST_NGINX_HTML_DIR/; smart_imaging on;
                         smart_imaging_network on; }
_EOC_

repeat_each(1);
no_long_string();

SmartImaging::add_block_defaults(http_config => SmartImaging::types_config(),
                                 config      => $Config,
                                 user_files  => \@Files);
SmartImaging::add_webp_check(\%Samples);
add_response_body_check(SmartImaging::body_sizes_check());

plan 'no_plan';

run_tests();

__DATA__

=== TEST 1: the guard on (default): a WebP that scores at least 80, found in a few encodes
--- more_headers
Accept: image/webp,*/*
--- request
GET /img/coffee.jpg
--- response_headers_like eval
SmartImaging::headers_like(
"Content-Type: image/webp\nVary: Accept\n",
"X-Smart-Imaging: ^converted format=webp in=$::CoffeeLen out=\\d+ saved=[\\d.]+% quality=\\d+ score=$::Pass80 encodes=[1-6] time=\\d+ms\$\n" .
'ETag: ^W/"[0-9a-f]+-[0-9a-f]+-webp-q100-src"$')
--- webp: coffee.jpg
--- no_error_log
[error]
[warn]



=== TEST 2: smart_imaging_guard 99.9: nothing passes, the original with reason=guard and the best score; an info line, no warning
--- log_level: info
--- more_headers
Accept: image/webp,*/*
--- request
GET /strict/coffee.jpg
--- response_headers_like eval
SmartImaging::headers_like(
"Content-Type: image/jpeg\nVary: Accept\n",
"X-Smart-Imaging: ^original reason=guard in=$::CoffeeLen score=\\d+\\.\\d time=\\d+ms\$\n" .
'ETag: ^"[0-9a-f]+-[0-9a-f]+"$')
--- response_body eval
$::Coffee
--- error_log
no encoding passed the visual-quality guard
--- no_error_log
[warn]
[error]



=== TEST 3: qlt with the guard on is the ceiling: qlt=95 converts, qlt=30 is too low for anything to pass (the original)
--- more_headers
Accept: image/webp,*/*
--- request eval
["GET /img/coffee.jpg?qlt=95", "GET /img/coffee.jpg?qlt=30"]
--- response_headers_like eval
SmartImaging::headers_like(
["Content-Type: image/webp", "Content-Type: image/jpeg"],
["X-Smart-Imaging: ^converted format=webp .* score=$::Pass80 .*",
 "X-Smart-Imaging: ^original reason=guard in=$::CoffeeLen score=\\d+\\.\\d time=\\d+ms"])
--- response_body_like eval
[qr/\ARIFF/, qr/\A\Q$::Coffee\E\z/s]



=== TEST 4: qlt with the guard off is the quality used: qlt=50 is smaller than the default (100), one encode, no score
--- more_headers
Accept: image/webp,*/*
--- request eval
["GET /noguard/photo.png?qlt=50", "GET /noguard/photo.png"]
--- response_headers_like eval
["X-Smart-Imaging: ^converted format=webp .* quality=\\d+ encodes=1 time=\\d+ms",
 "X-Smart-Imaging: ^converted format=webp .* quality=100 encodes=1 time=\\d+ms"]
--- response_body_like eval
[qr/\ARIFF/, qr/\ARIFF/]
--- body_sizes: 0 < 1



=== TEST 5: a poor network (Save-Data) lowers the guard to 65 and the ceiling to 85: smaller, and below 80 on this photo
--- more_headers eval
["Accept: image/webp\nSave-Data: on\n", "Accept: image/webp\n"]
--- request eval
["GET /net/coffee.jpg", "GET /net/coffee.jpg"]
--- response_headers_like eval
SmartImaging::headers_like(
["Content-Type: image/webp\n", "Content-Type: image/webp\n"],
["X-Smart-Imaging: ^converted format=webp .* score=(?:6[5-9]|7\\d)\\.\\d .*",
 "X-Smart-Imaging: ^converted format=webp .* score=$::Pass80 .*"])
--- webp eval
["coffee.jpg", "coffee.jpg"]
--- body_sizes: 0 < 1



=== TEST 6: smart_imaging_guard 99.9 on a PNG: lossless WebP, which always passes
--- more_headers
Accept: image/webp,*/*
--- request
GET /strict/photo.png
--- response_headers_like
Content-Type: image/webp
Vary: Accept
X-Smart-Imaging: ^converted format=webp .*
--- response_body_like eval
qr/\ARIFF.{4}WEBPVP8L/s
--- webp: 128x96
