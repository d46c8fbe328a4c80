// A JDK HTTP server (com.sun.net.httpserver) that answers every request with what a Java
// application reading it servlet-style sees: method, decoded path, query and form parameters
// decoded with URLDecoder (as servlet containers do), and header values. Prints its port.
import com.sun.net.httpserver.HttpServer;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

public class JavaReader {
  public static void main(String[] args) throws Exception {
    HttpServer server = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 64);
    server.createContext("/", exchange -> {
      byte[] body = exchange.getRequestBody().readAllBytes();
      StringBuilder out = new StringBuilder("{");
      out.append("\"method\":").append(quote(exchange.getRequestMethod()));
      out.append(",\"path\":").append(quote(exchange.getRequestURI().getPath()));
      out.append(",\"query\":").append(params(exchange.getRequestURI().getRawQuery()));
      String type = exchange.getRequestHeaders().getFirst("Content-Type");
      if (type != null && type.toLowerCase().startsWith("application/x-www-form-urlencoded")) {
        out.append(",\"form\":").append(params(new String(body, StandardCharsets.UTF_8)));
      }
      out.append(",\"headers\":{");
      boolean first = true;
      for (Map.Entry<String, List<String>> h : exchange.getRequestHeaders().entrySet()) {
        if (!first) out.append(',');
        first = false;
        out.append(quote(h.getKey().toLowerCase())).append(":[");
        for (int i = 0; i < h.getValue().size(); i++) out.append(i == 0 ? "" : ",").append(quote(h.getValue().get(i)));
        out.append(']');
      }
      out.append("}}");
      byte[] bytes = out.toString().getBytes(StandardCharsets.UTF_8);
      exchange.getResponseHeaders().set("Content-Type", "application/json");
      exchange.sendResponseHeaders(200, bytes.length);
      try (OutputStream os = exchange.getResponseBody()) { os.write(bytes); }
    });
    server.start();
    System.out.println(server.getAddress().getPort());
    System.out.flush();
  }

  /** Servlet-style: split on '&', then on the first '=', each side URL-decoded as UTF-8. */
  static String params(String raw) {
    Map<String, List<String>> map = new LinkedHashMap<>();
    if (raw != null && !raw.isEmpty()) {
      for (String pair : raw.split("&")) {
        if (pair.isEmpty()) continue;
        int eq = pair.indexOf('=');
        String name, value;
        try {
          name = URLDecoder.decode(eq < 0 ? pair : pair.substring(0, eq), StandardCharsets.UTF_8);
          value = eq < 0 ? "" : URLDecoder.decode(pair.substring(eq + 1), StandardCharsets.UTF_8);
        } catch (IllegalArgumentException e) {
          return "{\"__error\":[" + quote(e.getMessage()) + "]}";
        }
        map.computeIfAbsent(name, k -> new ArrayList<>()).add(value);
      }
    }
    StringBuilder out = new StringBuilder("{");
    boolean first = true;
    for (Map.Entry<String, List<String>> e : map.entrySet()) {
      if (!first) out.append(',');
      first = false;
      out.append(quote(e.getKey())).append(":[");
      for (int i = 0; i < e.getValue().size(); i++) out.append(i == 0 ? "" : ",").append(quote(e.getValue().get(i)));
      out.append(']');
    }
    return out.append('}').toString();
  }

  static String quote(String s) {
    StringBuilder out = new StringBuilder("\"");
    for (char c : s.toCharArray()) {
      if (c == '"' || c == '\\') out.append('\\').append(c);
      else if (c < 0x20 || (c >= 0xd800 && c <= 0xdfff)) out.append(String.format("\\u%04x", (int) c));
      else out.append(c);
    }
    return out.append('"').toString();
  }
}
